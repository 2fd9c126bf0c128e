"""Snapshot tests (pytest-textual-snapshot) of every screen at fixed sizes, from deterministic
data: a scripted event stream with fixed times, a fixed GPU snapshot behind the probe's
interface, a frozen clock. The SVGs double as the README's screenshots (docs/screenshots/)."""
from __future__ import annotations

import json
import time

import pytest

from tests.support.dashboard import tiny_dataset
from tui.dashboard.app import MirdeckApp
from tui.dashboard.runview import HostReading, RunView
from tui.gpu import DeviceReading, GpuSnapshot, ProcessMemory
from tui.run import events as ev

T0 = 1_764_160_000.0  # 2025-11-26 12:26:40 UTC
NOW = T0 + 754.0
GIB = 1 << 30
MODULES = ["audio_info", "loudness", "rhythm", "spectral", "essentia_tf", "audiobox", "flamingo_gguf"]
PIDS = {m: 41000 + i * 7 for i, m in enumerate(MODULES)}
RTF = {"audio_info": 900.0, "loudness": 220.0, "rhythm": 60.0, "spectral": 340.0, "essentia_tf": 410.0,
       "audiobox": 140.0, "flamingo_gguf": 11.0}


@pytest.fixture(autouse=True)
def _utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def gpu_snapshot(used_gib: float) -> GpuSnapshot:
    device = DeviceReading(index=0, name="Radeon RX 9070 series", vram_used=int(used_gib * GIB),
                           vram_total=16 * GIB, gtt_used=int(0.4 * GIB), gtt_total=31 * GIB,
                           busy_percent=97.0, temperature_c=72.0, bus_id="0000:03:00.0")
    procs = {PIDS["flamingo_gguf"]: ProcessMemory(PIDS["flamingo_gguf"], vram=int(8.9 * GIB), devices=(0,)),
             PIDS["audiobox"]: ProcessMemory(PIDS["audiobox"], vram=int(2.7 * GIB), devices=(0,)),
             PIDS["essentia_tf"]: ProcessMemory(PIDS["essentia_tf"], vram=int(1.1 * GIB), devices=(0,))}
    return GpuSnapshot(source="sysfs", devices=(device,), processes=procs)


def decode_of(i: int) -> dict:
    """flamingo_gguf's text generation on track ``i`` of the scripted run: five answers of about 650
    tokens together, decoded at 40–44 tokens/s."""
    tokens = 620 + (i * 37) % 61
    return {"generated_tokens": tokens, "decode_seconds": round(tokens / (40.0 + i % 5), 4)}


def scripted_view(text_generation: bool = False) -> RunView:
    """A run 12 minutes in: 1,284 tracks done of 4,410, two in flight, a few failures; with
    ``text_generation``, flamingo_gguf reports its decoded tokens (as the real back end does)."""
    view = RunView(clock=lambda: NOW)
    at = iter(T0 + i * 0.01 for i in range(10**6))
    view(ev.RunStarted(dataset="/data/goa", profile="rocm-rdna4", modules=MODULES, tracks=4410,
                       planned={m: (4410 if m != "audio_info" else 1284) for m in MODULES},
                       skipped={m: (3126 if m == "audio_info" else 0) for m in MODULES},
                       log_dir="/data/goa/.mirdeck/runs/20251126-122640", time=T0))
    for m in MODULES:
        device = "gpu" if m in ("essentia_tf", "audiobox", "flamingo_gguf") else "cpu"
        view(ev.WorkerStarted(module=m, pid=PIDS[m], device=device, ready=True, startup_seconds=1.5,
                              time=next(at)))
    for i in range(1284):
        track = f"Artist {i:04d} - Title"
        view(ev.TrackStarted(track=track, modules=MODULES, time=next(at)))
        for m in MODULES:
            view(ev.ModuleStarted(track=track, module=m, worker_pid=PIDS[m], time=next(at)))
            if m == "rhythm" and i in (301, 877):
                view(ev.ModuleFailed(track=track, module=m, kind="bad_input",
                                     message=f"{track}/full_mix.flac: 1.2 s of audio, too short for beats",
                                     time=next(at)))
                continue
            audio = 400.0
            tokens = decode_of(i) if text_generation and m == "flamingo_gguf" else {}
            view(ev.ModuleFinished(track=track, module=m, audio_seconds=audio, wall_seconds=audio / RTF[m],
                                   realtime_factor=RTF[m] * (1.04 if i % 2 else 0.97), keys=5,
                                   cpu_seconds=0.5 * audio / RTF[m], time=next(at), **tokens))  # a busy machine
        failed = ["rhythm"] if i in (301, 877) else []
        view(ev.TrackFinished(track=track, ok=[m for m in MODULES if m not in failed], failed=failed,
                              audio_seconds=400.0, time=next(at)))
    for i, (track, module, fraction, stage) in enumerate([
            ("Astral Projection - Dancing Galaxy", "flamingo_gguf", 0.6, "prompt 3/5"),
            ("Hallucinogen - LSD", "rhythm", 0.8, "beats")]):
        view(ev.TrackStarted(track=track, modules=MODULES, time=NOW - 40 + i * 12))
        view(ev.ModuleStarted(track=track, module=module, worker_pid=PIDS[module], time=NOW - 30))
        view(ev.ModuleProgress(track=track, module=module, fraction=fraction, stage=stage, time=NOW - 5))
    view(ev.WorkerLog(module="flamingo_gguf", pid=PIDS["flamingo_gguf"], line="llama: prompt eval 812 tokens",
                      time=NOW - 20))
    view(ev.ModuleFailed(track="X - Y", module="flamingo_gguf", kind="timeout",
                         message="flamingo_gguf on X - Y: no answer within 300 s; retrying on a fresh worker",
                         attempt=1, time=NOW - 12))
    for k in range(40):
        view.note_gpu(gpu_snapshot(12.0 + 2.0 * (k % 7) / 6))
        view.note_host(HostReading(cpu_percent=40 + (k * 7) % 50, ram_used=int(9.2 * GIB),
                                   ram_total=int(62.0 * GIB),
                                   worker_rss={PIDS["audiobox"]: int(3.1 * GIB), PIDS["rhythm"]: int(0.4 * GIB)}))
    view.note_gpu(gpu_snapshot(13.9))
    return view


def live_app() -> MirdeckApp:
    return MirdeckApp(view=scripted_view(), clock=lambda: NOW, probe_interval=0, refresh_hz=4)


def test_live_run_wide(snap_compare):
    assert snap_compare(live_app(), terminal_size=(120, 40))


def test_live_run_narrow_80x24(snap_compare):
    assert snap_compare(live_app(), terminal_size=(80, 24))


def test_live_run_log_filtered_to_errors(snap_compare):
    assert snap_compare(live_app(), terminal_size=(120, 40), press=["l", "l"])


@pytest.mark.parametrize("size", [(80, 40), (100, 30)])
def test_live_run_text_generation(snap_compare, size):
    """The text-generation panel at the two widths users run the dashboard in most."""
    app = MirdeckApp(view=scripted_view(text_generation=True), clock=lambda: NOW, probe_interval=0, refresh_hz=4)
    assert snap_compare(app, terminal_size=size)


def test_help_screen(snap_compare):
    assert snap_compare(live_app(), terminal_size=(120, 40), press=["question_mark"])


def test_ab_view(snap_compare, tmp_path, monkeypatch):
    from tests.support.ab_reports import write_report

    monkeypatch.chdir(tmp_path)
    write_report(tmp_path / "mirdeck-ab" / "20261126-120000")
    assert snap_compare(live_app(), terminal_size=(120, 40), press=["a"])


def test_no_gpu_panel_says_so(snap_compare):
    view = scripted_view()
    view.note_gpu(GpuSnapshot(source="none", note="no GPU found (nvml: NVML cannot start; sysfs: no amdgpu device)"))
    assert snap_compare(MirdeckApp(view=view, clock=lambda: NOW, probe_interval=0), terminal_size=(120, 40))


def _dataset_with_info(root):
    dataset = tiny_dataset(root, ["Demo Band - Groove in A minor", "Tiny - Blip"])
    folder = dataset / "Demo Band - Groove in A minor"
    info = {"duration_seconds": 30.0, "sample_rate": 44100, "channels": 2, "peak_dbfs": -1.0,
            "rms_dbfs": -18.0959, "clipping_ratio": 0.0,
            "flamingo_caption": "A driving four-on-the-floor groove in A minor at 120 BPM: punchy kick, "
                                "off-beat hats and a plucked bass under warm sustained chords.",
            "_mirdeck": {"audio_info": {"version": "1", "status": "ok", "profile": "cpu", "elapsed_s": 0.18,
                                        "realtime_factor": 166.7},
                         "rhythm": {"version": "1", "status": "error", "profile": "cpu",
                                    "error": {"kind": "bad_input", "message": "too short for beats"}}}}
    (folder / f"{folder.name}.INFO").write_text(json.dumps(info), encoding="utf-8")
    return dataset


def test_track_detail(snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dataset = _dataset_with_info(tmp_path / "demo")
    app = MirdeckApp(view=scripted_view(), clock=lambda: NOW, probe_interval=0)
    app.dataset = dataset

    async def open_track(pilot):
        app.action_track("Demo Band - Groove in A minor")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(120, 40), run_before=open_track)


def test_setup_screen(snap_compare, tmp_path, monkeypatch):
    from backends.registry import all_specs

    monkeypatch.chdir(tmp_path)
    _dataset_with_info(tmp_path / "demo")
    # The Flamingo back ends bring their choice; their weights are never installed where tests run.
    specs = {name: all_specs()[name] for name in ("audio_info", "flamingo_gguf", "flamingo_hf")}
    app = MirdeckApp(dataset="demo", profile="rocm-rdna4", specs=specs, clock=lambda: NOW)

    async def wait_scan(pilot):
        for _ in range(100):
            if getattr(app.screen, "summary", None) is not None:
                break
            await pilot.pause(0.05)
        await pilot.pause(0.1)

    assert snap_compare(app, terminal_size=(120, 40), run_before=wait_scan)
