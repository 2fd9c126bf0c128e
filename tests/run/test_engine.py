"""The run engine end to end: real workers, real files, misbehaving backends."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import soundfile

from tests.support.helpers import events_named, info_of, run_engine, sine, write_track
from tui.paths import ROOT
from tui.run.engine import Engine, RunOptions
from tui.run.profiles import load
from tui.run.runlog import RunLog, read_events

FAKES = ",".join(f"tests.support.fake_backends.{m}" for m in
                 ("noop", "crashy", "hangy", "exitcrash", "printer", "slowprogress", "needsmodel", "dependent",
                  "single", "slowstart", "hungry"))


@pytest.fixture(autouse=True)
def fake_backends(monkeypatch):
    monkeypatch.setenv("MIRDECK_EXTRA_BACKENDS", FAKES)


def tiny_dataset(root: Path, names: list[str], seconds: float = 0.5) -> Path:
    for name in names:
        write_track(root, name, sine(440, seconds))
    return root


def test_audio_info_values_come_from_the_audio(tmp_path):
    ds = tmp_path / "ds"
    rate = 48000
    t = np.arange(rate * 2) / rate
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 1000 * t), 0.25 * np.sin(2 * np.pi * 1000 * t)], axis=1)
    write_track(ds, "Sine", stereo, rate=rate, fmt="wav", subtype="FLOAT")
    clipped = np.clip(2 * np.sin(2 * np.pi * 100 * t), -1, 1)
    write_track(ds, "Clipped", clipped, rate=rate, fmt="wav", subtype="FLOAT")
    events, stats = run_engine(ds, only=["audio_info"])
    info = info_of(ds / "Sine")
    assert info["duration_seconds"] == pytest.approx(2.0)
    assert info["sample_rate"] == 48000 and info["channels"] == 2
    assert info["peak_dbfs"] == pytest.approx(20 * np.log10(0.5), abs=1e-3)
    # mean square of two sines of amplitude a, b over both channels: (a²/2 + b²/2) / 2
    assert info["rms_dbfs"] == pytest.approx(10 * np.log10((0.125 + 0.03125) / 2), abs=1e-3)
    assert info["clipping_ratio"] == 0.0
    # sin clipped at |2 sin| >= 1: a third of the samples (|sin| >= 0.5 for 2/3 of the cycle... -> 2/3)
    assert info_of(ds / "Clipped")["clipping_ratio"] == pytest.approx(2 / 3, abs=0.01)
    prov = info["_mirdeck"]["audio_info"]
    assert prov["status"] == "ok" and prov["version"] == "1" and prov["profile"] == "cpu"
    assert prov["realtime_factor"] > 0 and prov["audio_seconds"] == pytest.approx(2.0)
    assert stats["audio_info"].done == 2


def test_second_run_skips_what_is_done_and_overwrite_redoes_it(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ["A", "B"])
    run_engine(ds, only=["audio_info", "noop"])
    events, stats = run_engine(ds, only=["audio_info", "noop"])
    assert stats["audio_info"].skipped == 2 and stats["audio_info"].done == 0
    assert not events_named(events, "worker_started")  # nothing to do: no worker at all
    events, stats = run_engine(ds, only=["audio_info", "noop"], overwrite=["noop"])
    assert stats["noop"].done == 2 and stats["audio_info"].skipped == 2


def test_only_and_skip_select_modules(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ["A"])
    events, stats = run_engine(ds, only=["noop", "audio_info"], skip=["audio_info"])
    assert set(stats) == {"noop"}
    assert "audio_info" not in info_of(ds / "A")["_mirdeck"]


def test_requirements_come_along_and_feed_their_results(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ["A"], seconds=0.75)
    events, stats = run_engine(ds, only=["dependent"])
    assert set(stats) == {"audio_info", "dependent"}
    assert info_of(ds / "A")["dependent_duration"] == pytest.approx(0.75)
    # Later runs read the requirement from the .INFO when it is already done.
    events, stats = run_engine(ds, only=["dependent"], overwrite=["dependent"])
    assert stats["audio_info"].skipped == 1 and stats["dependent"].done == 1


def test_audio_is_decoded_once_per_track_and_rate(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ["A", "B", "C"])
    events, _ = run_engine(ds, only=["audio_info", "crashy"])  # both read the mix at its own rate
    decoded = events_named(events, "track_decoded")
    assert sorted(e.track for e in decoded) == ["A", "B", "C"]
    assert all(e.sources == {"mix": ["native"]} for e in decoded)


def test_worker_killed_mid_track_is_retried_and_the_run_goes_on(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ["1 fine", "2 crash always", "3 crashonce", "4 fine"])
    events, stats = run_engine(ds, only=["crashy", "audio_info"], jobs=1)
    failed = events_named(events, "module_failed")
    final = [e for e in failed if e.attempt == 2]
    assert [(e.track, e.kind) for e in final] == [("2 crash always", "crash")]
    assert stats["crashy"].done == 3 and stats["crashy"].failed == 1
    assert "crashy_frames" in info_of(ds / "3 crashonce")  # the retry on a fresh worker succeeded
    broken = info_of(ds / "2 crash always")
    assert "crashy_frames" not in broken and broken["_mirdeck"]["crashy"]["error"]["kind"] == "crash"
    assert broken["duration_seconds"] == pytest.approx(0.5)  # the other module's result is kept
    assert any(e.reason == "crash" for e in events_named(events, "worker_exited"))


def test_hanging_worker_times_out_is_killed_and_the_run_goes_on(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ["a hang", "b fine"])
    events, stats = run_engine(ds, only=["hangy"], jobs=1)
    assert stats["hangy"].failed == 1 and stats["hangy"].done == 1
    error = info_of(ds / "a hang")["_mirdeck"]["hangy"]["error"]
    assert error["kind"] == "timeout" and "1 s" in error["message"] or "2 s" in error["message"]
    assert info_of(ds / "b fine")["hangy_ok"] == 1


def test_crash_while_exiting_after_results_loses_nothing(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ["A", "B"])
    events, stats = run_engine(ds, only=["exitcrash"], jobs=1)
    assert stats["exitcrash"].done == 2 and stats["exitcrash"].failed == 0
    assert all(info_of(ds / n)["exitcrash_ok"] == 1 for n in "AB")
    exits = [e for e in events_named(events, "worker_exited") if e.module == "exitcrash"]
    assert [e.reason for e in exits] == ["crash_at_exit"]
    assert not events_named(events, "module_failed")


def test_printing_libraries_cannot_corrupt_the_protocol(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ["A", "B"])
    log_dir = tmp_path / "log"
    events, stats = run_engine(ds, only=["printer"], log_dir=log_dir)
    assert stats["printer"].done == 2
    assert "tqdm-like noise" in (log_dir / "workers.log").read_text()


def test_missing_model_fails_every_track_with_the_fetch_command(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ["A", "B"])
    events, stats = run_engine(ds, only=["needsmodel", "noop"])
    assert stats["needsmodel"].failed == 2 and stats["noop"].done == 2
    error = info_of(ds / "A")["_mirdeck"]["needsmodel"]["error"]
    assert error["kind"] == "model_missing"
    assert "mirdeck models fetch test-model" in error["message"]
    assert len([e for e in events_named(events, "worker_started") if e.module == "needsmodel"]) == 1


def test_bad_inputs_are_reported_by_name_and_the_rest_is_analysed(tmp_path):
    ds = tmp_path / "ds"
    good = write_track(ds, "good", sine(440, 1.0))
    (ds / "empty").mkdir()
    (ds / "empty" / "full_mix.flac").write_bytes(b"")
    (ds / "text").mkdir()
    (ds / "text" / "full_mix.flac").write_text("this is not audio\n")
    whole = (good / "full_mix.flac").read_bytes()
    (ds / "truncated").mkdir()
    (ds / "truncated" / "full_mix.flac").write_bytes(whole[: len(whole) // 3])
    nan = sine(440, 0.5)
    nan[100:200] = np.nan
    write_track(ds, "nan", nan, fmt="wav", subtype="FLOAT")
    write_track(ds, "short", sine(440, 0.05))
    write_track(ds, "8k mono", sine(440, 1.0, rate=8000, channels=1), rate=8000, fmt="wav")
    write_track(ds, "192k 6ch", np.tile(sine(440, 0.5, rate=192000, channels=1)[:, None], (1, 6)),
                rate=192000, fmt="wav", subtype="FLOAT")
    (ds / "no mix here").mkdir()
    soundfile.write(ds / "no mix here" / "drums.wav", sine(100, 0.5), 44100)
    weird = "-dash, \"quoted\" 'name' Ünïcødé 名前"
    write_track(ds, weird, sine(440, 0.5))
    events, stats = run_engine(ds, only=["audio_info"])
    started = events_named(events, "run_started")[0]
    assert any("no mix here" in p and "no full_mix" in p for p in started.scan_problems)
    failures = {e.track: e for e in events_named(events, "module_failed")}
    assert set(failures) == {"empty", "text", "nan"} | ({"truncated"} & set(failures))
    assert "empty (0 bytes)" in failures["empty"].message and "empty/full_mix.flac" in failures["empty"].message
    assert "not decodable audio" in failures["text"].message
    assert "non-finite" in failures["nan"].message and "0.002 s" in failures["nan"].message
    assert all(e.kind == "bad_input" for e in failures.values())
    assert info_of(ds / "short")["duration_seconds"] == pytest.approx(0.05)
    assert info_of(ds / "8k mono")["sample_rate"] == 8000 and info_of(ds / "8k mono")["channels"] == 1
    assert info_of(ds / "192k 6ch")["channels"] == 6
    assert info_of(ds / weird)["duration_seconds"] == pytest.approx(0.5)
    if "truncated" not in failures:  # libsndfile may decode what survives of a cut FLAC
        assert info_of(ds / "truncated")["duration_seconds"] < 1.0
    assert info_of(ds / "empty")["_mirdeck"]["audio_info"]["status"] == "error"


def test_read_only_track_folder_is_reported_and_the_run_goes_on(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ["locked", "open"])
    # Root ignores permission bits, so make the folder truly read-only with a read-only bind mount
    # where we can; otherwise with chmod (which works for ordinary users).
    locked = ds / "locked"
    mounted = False
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(locked), str(locked)],
                                 capture_output=True).returncode == 0
        if not mounted:
            pytest.skip("running as root without mount rights: cannot make a read-only folder")
    else:
        locked.chmod(0o555)
    try:
        events, stats = run_engine(ds, only=["audio_info"])
    finally:
        if mounted:
            subprocess.run(["umount", str(locked)], check=True)
        locked.chmod(0o755)
    assert info_of(ds / "open")["duration_seconds"] == pytest.approx(0.5)
    failure = [e for e in events_named(events, "module_failed") if e.track == "locked"]
    assert failure and "cannot write" in failure[0].message and "locked" in failure[0].message
    assert not (locked / "locked.INFO").exists()


def test_unparseable_info_is_moved_aside_never_overwritten(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ["A"])
    broken = ds / "A" / "A.INFO"
    broken.write_text('{"lufs": -9.1, "bpm": 12')
    events, stats = run_engine(ds, only=["audio_info"])
    aside = list((ds / "A").glob("A.INFO.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == '{"lufs": -9.1, "bpm": 12'
    assert info_of(ds / "A")["duration_seconds"] == pytest.approx(0.5)
    problems = events_named(events, "store_problem")
    assert problems and "moved aside" in problems[0].message
    started = events_named(events, "run_started")[0]
    assert any("not valid JSON" in p for p in started.scan_problems)


def test_failed_rerun_keeps_earlier_good_values(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ["A"])
    run_engine(ds, only=["audio_info"])
    before = info_of(ds / "A")
    (ds / "A" / "full_mix.flac").write_text("now broken")
    run_engine(ds, only=["audio_info"], overwrite=["audio_info"])
    after = info_of(ds / "A")
    assert after["duration_seconds"] == before["duration_seconds"]
    prov = after["_mirdeck"]["audio_info"]
    assert prov["status"] == "ok" and prov["last_error"]["error"]["kind"] == "bad_input"


def test_run_log_holds_every_event_as_json_lines(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ["A", "B"])
    engine = Engine(ds, load("cpu"), RunOptions(only=["noop"], jobs=1, log_dir=tmp_path / "log"))
    engine.subscribe(RunLog(engine.log_dir))
    asyncio.run(engine.run())
    names = [e["event"] for e in read_events(tmp_path / "log" / "events.jsonl")]
    assert names[0] == "run_started" and names[-1] == "run_finished"
    assert names.count("module_finished") == 2 and names.count("track_finished") == 2


def _run_with_control(ds: Path, action, *, only, jobs=1, options=None):
    engine = Engine(ds, load("cpu"), RunOptions(only=only, jobs=jobs, log_dir=ds.parent / "log",
                                                module_options=options or {}))
    seen = []
    engine.subscribe(seen.append)
    engine.subscribe(lambda e: action(engine, e))
    stats = asyncio.run(engine.run())
    return engine, seen, stats


def test_graceful_stop_finishes_tracks_in_flight_and_leaves_no_worker(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", [f"t{i}" for i in range(6)])
    pids = []

    def action(engine, e):
        if e.name == "worker_started":
            pids.append(e.pid)
        if e.name == "module_started" and e.track == "t0":
            engine.stop()

    engine, seen, stats = _run_with_control(ds, action, only=["slowprogress"],
                                            options={"slowprogress": {"steps": 3, "step_seconds": 0.05}})
    finished = [e.track for e in events_named(seen, "track_finished") if e.ok]
    assert finished == ["t0"], "only the request a worker was computing finishes"
    assert info_of(ds / "t0")["slow_ok"] == 1
    end = events_named(seen, "run_finished")[0]
    assert end.stopped and sorted(end.left) == [f"t{i}" for i in range(1, 6)]
    assert not events_named(seen, "module_failed") and engine.exit_code() == 3
    assert pids and not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                            for p in pids)


def test_immediate_stop_kills_workers_and_corrupts_nothing(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", [f"t{i}" for i in range(4)])

    def action(engine, e):
        if e.name == "module_progress" and e.fraction >= 0.5:
            engine.stop(immediate=True)

    engine, seen, stats = _run_with_control(ds, action, only=["slowprogress"],
                                            options={"slowprogress": {"steps": 20, "step_seconds": 0.05}})
    assert stats["slowprogress"].done == 0 and stats["slowprogress"].failed == 0
    assert not list(ds.rglob("*.INFO"))  # nothing half-written, nothing recorded as a failure


def test_pause_holds_new_work_until_resume(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ["a", "b", "c"])
    marks = {}

    def action(engine, e):
        if e.name == "module_started" and "paused_at" not in marks:
            engine.pause()  # the first request is already sent; nothing else may start
            marks["paused_at"] = time.monotonic()
            asyncio.get_running_loop().call_later(0.6, engine.resume)
        elif e.name == "module_started":
            marks.setdefault("next_start", time.monotonic())

    engine, seen, stats = _run_with_control(ds, action, only=["noop"], jobs=1)
    assert stats["noop"].done == 3
    assert marks["next_start"] - marks["paused_at"] >= 0.5


def test_workers_exit_when_the_engine_is_killed(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", [f"t{i}" for i in range(4)])
    script = (
        "import asyncio, os, sys\n"
        "from tui.run.engine import Engine, RunOptions\nfrom tui.run.profiles import load\n"
        f"e = Engine({str(ds)!r}, load('cpu'), RunOptions(only=['slowprogress'], jobs=2,"
        f" log_dir={str(tmp_path / 'log')!r},"
        " module_options={'slowprogress': {'steps': 1000, 'step_seconds': 0.05}}))\n"
        "e.subscribe(lambda ev: print('PID', ev.pid, flush=True) if ev.name == 'worker_started' else None)\n"
        "asyncio.run(e.run())\n")
    env = {**os.environ, "MIRDECK_EXTRA_BACKENDS": FAKES}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    pids = []
    while len(pids) < 2:
        line = proc.stdout.readline()
        assert line, "engine ended before starting workers"
        if line.startswith("PID"):
            pids.append(int(line.split()[1]))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in pids):
        time.sleep(0.1)
    assert not any(psutil.pid_exists(p) for p in pids)


def test_cpu_modules_run_in_parallel_across_tracks(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", [f"t{i}" for i in range(6)])
    running, peak, live, peak_live = set(), [0], set(), [0]

    def action(engine, e):
        if e.name == "module_started":
            running.add(e.track)
            peak[0] = max(peak[0], len(running))
        elif e.name in ("module_finished", "module_failed"):
            running.discard(e.track)
        elif e.name == "worker_started" and e.module == "slowprogress":
            live.add(e.pid)
            peak_live[0] = max(peak_live[0], len(live))
        elif e.name == "worker_exited":
            live.discard(e.pid)

    _run_with_control(ds, action, only=["slowprogress"], jobs=2,
                      options={"slowprogress": {"steps": 4, "step_seconds": 0.1}})
    assert peak[0] >= 2  # both cores busy
    assert peak_live[0] == 2  # never more workers than jobs


def test_unknown_module_is_a_clear_error(tmp_path):
    from backends.registry import RegistryError, all_specs
    from tui.run.plan import resolve_modules

    with pytest.raises(RegistryError, match="unknown module 'lufs'.*known modules: .*audio_info"):
        resolve_modules(all_specs(), ["lufs"])


def test_digital_silence_has_null_levels_with_the_reason(tmp_path):
    ds = tmp_path / "ds"
    write_track(ds, "silence", np.zeros((44100, 2), dtype=np.float32))
    run_engine(ds, only=["audio_info"])
    info = info_of(ds / "silence")
    assert info["peak_dbfs"] is None and info["rms_dbfs"] is None and info["duration_seconds"] == 1.0
    assert "digital silence" in info["_mirdeck"]["audio_info"]["notes"]["peak_dbfs"]


def test_max_workers_caps_a_memory_hungry_module(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", [f"t{i}" for i in range(4)])
    pids = set()
    events, stats = run_engine(ds, only=["single", "noop"], jobs=2,
                               on_event=lambda engine, e: pids.add(e.pid)
                               if e.name == "worker_started" and e.module == "single" else None)
    assert stats["single"].done == 4 and len(pids) == 1


def test_a_module_whose_workers_do_not_fit_the_memory_runs_one(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", [f"t{i}" for i in range(4)])
    pids = set()
    events, stats = run_engine(ds, only=["hungry", "noop"], jobs=2,
                               on_event=lambda engine, e: pids.add(e.pid)
                               if e.name == "worker_started" and e.module == "hungry" else None)
    assert stats["hungry"].done == 4 and len(pids) == 1


@pytest.mark.parametrize("startup_s, request_s, tracks, workers", [
    (1.5, 0.02, 12, 1),  # one worker finishes 12 quick tracks long before a second is ready
    (0.0, 0.4, 8, 2),  # start-up is short beside the remaining work: a second worker pays
])
def test_another_worker_starts_only_when_the_remaining_work_outlasts_its_start_up(
        tmp_path, monkeypatch, startup_s, request_s, tracks, workers):
    monkeypatch.setenv("MIRDECK_TEST_STARTUP_S", str(startup_s))
    ds = tiny_dataset(tmp_path / "ds", [f"T{i:02d}" for i in range(tracks)], seconds=0.1)
    events, stats = run_engine(ds, only=["slowstart"], jobs=2, module_options={"slowstart": {"seconds": request_s}})
    assert stats["slowstart"].done == tracks
    assert len([e for e in events_named(events, "worker_started") if e.module == "slowstart"]) == workers


def test_cpu_seconds_count_the_worker_and_its_helpers_not_the_waiting(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRDECK_EXTRA_BACKENDS", FAKES + ",tests.support.fake_backends.cpubound")
    ds = tiny_dataset(tmp_path / "ds", ["A"], seconds=2.0)
    _, stats = run_engine(ds, only=["cpubound"], module_options={"cpubound": {"spin_s": 0.4, "idle_s": 1.0}})
    prov = info_of(ds / "A")["_mirdeck"]["cpubound"]
    # 0.4 s spun here and 0.4 s in the helper; the helper's interpreter start-up adds a little.
    assert 0.75 <= prov["cpu_seconds"] <= 1.6
    assert prov["elapsed_s"] >= 1.4  # the idle second is wall time, not CPU
    assert prov["realtime_per_core"] == pytest.approx(2.0 / prov["cpu_seconds"], rel=0.01)
    summary = stats["cpubound"].to_dict()
    assert summary["cpu_seconds"] == pytest.approx(prov["cpu_seconds"], abs=1e-3)
    assert summary["realtime_per_core"] > summary["realtime_factor"]


def _scaled_run(ds, **options):
    return run_engine(ds, only=["scaled"], module_options={"scaled": options} if options else None)


def test_options_that_change_the_output_are_recorded_and_part_of_done(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRDECK_EXTRA_BACKENDS", FAKES + ",tests.support.fake_backends.scaled")
    ds = tiny_dataset(tmp_path / "ds", ["A"])
    _scaled_run(ds)
    prov = info_of(ds / "A")["_mirdeck"]["scaled"]
    assert prov["options"] == {"extra": [], "factor": 1} and len(prov["options_hash"]) == 16
    # The default given explicitly, or a runtime-only option: the same result, nothing to do.
    for options in ({"factor": 1}, {"threads": 4}):
        _, stats = _scaled_run(ds, **options)
        assert stats["scaled"].skipped == 1 and stats["scaled"].done == 0, options
    # Another factor changes what it writes: the done track runs again, without --overwrite.
    _, stats = _scaled_run(ds, factor=3)
    assert stats["scaled"].done == 1
    info = info_of(ds / "A")
    assert info["scaled_value"] == 30 and info["_mirdeck"]["scaled"]["options"]["factor"] == 3


def test_keys_a_module_no_longer_writes_are_removed_and_nobody_elses(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("MIRDECK_EXTRA_BACKENDS", FAKES + ",tests.support.fake_backends.scaled")
    ds = tiny_dataset(tmp_path / "ds", ["A"])
    run_engine(ds, only=["noop"])
    _scaled_run(ds, extra=["x", "y"])
    path = ds / "A" / "A.INFO"
    info = json.loads(path.read_text())
    assert info["scaled_extra_x"] == 1 and info["scaled_extra_y"] == 1
    info["my_own_note"] = "kept"  # a person's key
    path.write_text(json.dumps(info))
    _scaled_run(ds, extra=["x"])  # "y" dropped
    info = info_of(ds / "A")
    assert "scaled_extra_y" not in info and info["scaled_extra_x"] == 1
    assert info["my_own_note"] == "kept" and info["noop_ok"] == 1
    assert info["_mirdeck"]["scaled"]["keys"] == ["scaled_extra_x", "scaled_value"]
