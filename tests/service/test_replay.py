"""The replay a late client gets: replayed into a fresh view it ends where a view that watched from
the start ends, while keeping fewer lines than the run sent."""
from __future__ import annotations

from tests.support.helpers import run_engine, sine, write_track
from tui.dashboard.runview import RunView
from tui.run import events as ev
from tui.service import wire
from tui.service.replay import Replay, RunProgress


def view_state(view: RunView) -> dict:
    return {"modules": {n: (r.planned, r.done, r.failed, r.skipped, r.running, round(r.audio_seconds, 6),
                            round(r.wall_seconds, 6), r.last_error) for n, r in view.modules.items()},
            "tracks": (view.tracks_total, view.tracks_started, view.tracks_finished, view.tracks_failed),
            "in_flight": {t: (s.modules, dict(s.progress), set(s.finished)) for t, s in view.in_flight.items()},
            "errors": {t: [(e.module, e.message) for e in entries] for t, entries in view.errors.items()},
            "latest": (view.latest_track, dict(view.latest_outcome)), "decode": view.decode.done,
            "finished": view.finished_at, "stopped": view.stopped}


def replayed(events: list[ev.Event], log_tail: int = 2000) -> tuple[RunView, int]:
    replay = Replay(log_tail=log_tail)
    for event in events:
        replay.add(event, wire.event_line(event))
    view = RunView()
    for line in replay:
        view(ev.from_dict(wire.decode(line)["data"]))
    return view, len(replay)


def test_replay_of_a_real_run_with_crashes_and_retries_gives_the_same_view(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRDECK_EXTRA_BACKENDS", "tests.support.fake_backends.crashy,"
                                                 "tests.support.fake_backends.slowprogress,tests.support.fake_backends.printer")
    root = tmp_path / "ds"
    for name in ("a one", "b crashonce", "c crash", "d four"):
        write_track(root, name, sine(440, 0.5, rate=8000), rate=8000)
    events, _ = run_engine(root, only=["crashy", "audio_info", "slowprogress", "printer"], jobs=2)
    names = {e.name for e in events}
    assert {"module_progress", "module_failed", "worker_exited", "worker_log"} <= names
    # Cut the stream at every point: a client attaching then sees what the early one saw.
    for cut in range(1, len(events) + 1, max(1, len(events) // 25)):
        early = RunView()
        for event in events[:cut]:
            early(event)
        late, _ = replayed(events[:cut])
        assert view_state(late) == view_state(early), f"after {cut} of {len(events)} events"
    late, kept = replayed(events)
    assert kept < len(events)
    assert late.modules["crashy"].failed == 1 and late.modules["crashy"].done == 3


def test_worker_stderr_beyond_the_tail_is_dropped_from_the_replay():
    events = [ev.WorkerLog(module="m", pid=1, line=f"line {i}") for i in range(50)]
    view, kept = replayed(events, log_tail=10)
    assert kept == 10
    assert [e.message for e in view.log] == [f"line {i}" for i in range(40, 50)]


def test_status_numbers_follow_the_events():
    progress = RunProgress()
    progress(ev.RunStarted(dataset="d", profile="cpu", modules=["a", "b"], tracks=3, planned={"a": 3, "b": 2},
                           skipped={"a": 0, "b": 1}, log_dir="l", time=100.0))
    progress(ev.ModuleFinished(track="t1", module="a", audio_seconds=1, wall_seconds=1, realtime_factor=1, keys=1))
    progress(ev.ModuleFailed(track="t1", module="b", kind="crash", message="x", attempt=1))  # retried: not final
    progress(ev.ModuleFailed(track="t1", module="b", kind="crash", message="x", attempt=2))
    assert (progress.units_done, progress.units_total, progress.failed, progress.tracks_total) == (2, 5, 1, 3)
    assert progress.eta_seconds(now=110.0) == 15.0  # 3 units left at 5 s each
    assert progress.eta_seconds(now=110.0, paused=True) is None


def test_status_shows_each_text_generating_module_s_tokens_and_rates():
    from tui.service.status import format_rows

    progress = RunProgress()
    progress(ev.RunStarted(dataset="d", profile="cpu", modules=["flamingo_gguf", "a"], tracks=2,
                           planned={"flamingo_gguf": 2, "a": 2}, skipped={}, log_dir="l", time=100.0))
    for tokens, seconds in ((600, 15.0), (650, 13.0)):  # 40 then 50 tokens/s
        progress(ev.ModuleFinished(track="t", module="flamingo_gguf", audio_seconds=1, wall_seconds=20,
                                   realtime_factor=1, keys=6, generated_tokens=tokens, decode_seconds=seconds))
    progress(ev.ModuleFinished(track="t", module="a", audio_seconds=1, wall_seconds=1, realtime_factor=1, keys=1))
    state = progress.to_dict()
    assert state["decode"] == {"flamingo_gguf": {"generated_tokens": 1250, "seconds": 28.0,
                                                 "last_tokens_per_s": 50.0, "mean_tokens_per_s": 44.64}}
    row = {"dataset": "d", "pid": 1, "detached": True, "log_dir": "l", **state}
    lines = format_rows([row]).splitlines()
    assert lines[2] == "  flamingo_gguf: 1,250 tokens generated, 50.0 tok/s latest track, 44.6 tok/s run mean"
    assert len(lines) == 3  # "a" generates no text: no line
