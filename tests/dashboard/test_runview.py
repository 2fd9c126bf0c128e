"""The dashboard's model: counts, ETA and log built from engine events (no screen involved)."""
from __future__ import annotations

import pytest

from tui.dashboard.runview import RunView
from tui.gpu import DeviceReading, GpuSnapshot, ProcessMemory
from tui.run import events as ev

T0 = 1000.0


def started_view(now: list[float]) -> RunView:
    view = RunView(clock=lambda: now[0])
    view(ev.RunStarted(dataset="/d", profile="cpu", modules=["a", "b"], tracks=10,
                       planned={"a": 10, "b": 10}, skipped={"a": 0, "b": 0}, log_dir="/l", time=T0))
    return view


def finish(view: RunView, track: str, module: str, at: float, audio: float = 60.0, wall: float = 2.0) -> None:
    view(ev.ModuleStarted(track=track, module=module, worker_pid=7, time=at - wall))
    view(ev.ModuleFinished(track=track, module=module, audio_seconds=audio, wall_seconds=wall,
                           realtime_factor=audio / wall, keys=3, time=at))


def test_eta_follows_the_pace_so_far_and_excludes_pauses():
    now = [T0]
    view = started_view(now)
    # 5 of 20 requests of 2 s each, the first sent at T0 + 18: 10 worker seconds in 82 s. The 15
    # left (b costed as a) are 30 worker seconds: 246 s at that pace.
    for i in range(5):
        finish(view, f"t{i}", "a", T0 + 20 * (i + 1))
    now[0] = T0 + 100
    assert view.eta_seconds() == pytest.approx(246)
    view.set_paused(True)
    assert view.eta_seconds() is None  # no pace while paused, rather than a made-up one
    now[0] = T0 + 400
    view.set_paused(False)
    assert view.elapsed() == 100  # the 300 s pause does not count as working time
    assert view.eta_seconds() == pytest.approx(246)


def test_no_eta_before_any_result():
    view = started_view([T0 + 50])
    assert view.eta_seconds() is None


def test_realtime_factor_last_and_overall():
    view = started_view([T0])
    finish(view, "t0", "a", T0 + 1, audio=100, wall=1)
    finish(view, "t1", "a", T0 + 2, audio=100, wall=4)
    row = view.modules["a"]
    assert row.last_rtf == 25
    assert row.rtf == 40  # 200 s of audio in 5 s, not the mean of 100 and 25


def test_realtime_per_core_comes_from_the_workers_cpu_seconds_and_is_shown():
    """On a busy machine wall time says 2 s where the worker used 0.5 CPU s: the table shows both."""
    from tui.dashboard.widgets.module_table import COLUMNS, row_cells

    view = started_view([T0])
    view(ev.ModuleStarted(track="t0", module="a", worker_pid=7, time=T0))
    view(ev.ModuleFinished(track="t0", module="a", audio_seconds=60.0, wall_seconds=2.0,
                           realtime_factor=30.0, keys=3, cpu_seconds=0.5, time=T0 + 2))
    row = view.modules["a"]
    assert row.rtf == 30 and row.realtime_per_core == 120
    cells = dict(zip([name for name, _ in COLUMNS], row_cells(row, run_over=False)))
    assert cells["RTF all"][0] == "30.0×" and cells["RTF core"][0] == "120×"


def test_a_crash_retried_then_failing_counts_once_and_logs_both():
    view = started_view([T0])
    view(ev.ModuleStarted(track="t", module="a", worker_pid=7, time=T0))
    view(ev.ModuleFailed(track="t", module="a", kind="crash", message="died; retrying on a fresh worker",
                         attempt=1, time=T0 + 1))
    assert view.modules["a"].failed == 0
    view(ev.ModuleStarted(track="t", module="a", worker_pid=8, time=T0 + 1))
    view(ev.ModuleFailed(track="t", module="a", kind="crash", message="died again", attempt=2, time=T0 + 2))
    assert view.modules["a"].failed == 1 and view.modules["a"].running == 0
    assert [e.level for e in view.filtered_log("warning")] == ["warning", "error"]
    assert view.errors["t"][0].message == "crash: died again"


def test_a_module_whose_worker_is_not_ready_is_marked_unavailable_with_the_reason():
    view = started_view([T0])
    view(ev.WorkerStarted(module="b", pid=9, device="cpu", ready=False, startup_seconds=0.1, time=T0))
    view(ev.Warning(message="model clap missing: run mirdeck models fetch clap", module="b", time=T0))
    assert view.modules["b"].state(run_over=False) == "unavailable"
    assert "mirdeck models fetch clap" in view.modules["b"].unavailable


def test_log_filters_by_level_and_module_and_shows_stderr_around_an_error():
    view = started_view([T0])
    for i in range(12):
        view(ev.WorkerLog(module="a", pid=7, line=f"line {i}", time=T0 + i))
    view(ev.WorkerLog(module="b", pid=8, line="other module", time=T0 + 12))
    view(ev.ModuleFailed(track="t", module="a", kind="internal", message="boom", time=T0 + 13))
    assert all(e.module == "a" for e in view.filtered_log("stderr", "a"))
    assert [e.level for e in view.filtered_log("error")] == ["error"]
    around = view.log_around(view.errors["t"][0], before=3, after=0)
    assert [e.message for e in around] == ["line 9", "line 10", "line 11", "internal: boom"]  # not b's line


def test_peak_vram_per_module_comes_from_its_workers_pids():
    view = started_view([T0])
    view(ev.WorkerStarted(module="a", pid=7, device="gpu", ready=True, startup_seconds=1, time=T0))
    device = DeviceReading(index=0, name="gpu", vram_used=5, vram_total=10)
    view.note_gpu(GpuSnapshot(source="test", devices=(device,), processes={7: ProcessMemory(7, vram=3000)}))
    view.note_gpu(GpuSnapshot(source="test", devices=(device,), processes={7: ProcessMemory(7, vram=1000)}))
    assert view.modules["a"].peak_vram == 3000
    assert view.modules["b"].peak_vram is None  # never seen on a GPU: unknown, not 0
    assert list(view.gpu_history[0]) == [0.5, 0.5]


def test_eta_weighs_each_module_by_its_measured_cost_per_audio_second():
    """One worker, two modules: ``fast`` costs 0.01 s per audio second, ``slow`` 1 s. After
    all 10 fast requests and 2 slow ones (126 s of work, 126 s elapsed), 8 slow requests of
    60 s of audio are left: 480 s. Counting requests alike would say 8 x 126 / 12 = 84 s."""
    now = [T0]
    view = RunView(clock=lambda: now[0])
    view(ev.RunStarted(dataset="/d", profile="cpu", modules=["fast", "slow"], tracks=10,
                       planned={"fast": 10, "slow": 10}, skipped={"fast": 0, "slow": 0}, log_dir="/l", time=T0))
    at = T0
    for i in range(10):
        at += 0.6
        finish(view, f"t{i}", "fast", at, audio=60.0, wall=0.6)
    for i in range(2):
        at += 60.0
        finish(view, f"t{i}", "slow", at, audio=60.0, wall=60.0)
        view(ev.TrackFinished(track=f"t{i}", ok=["fast", "slow"], failed=[], audio_seconds=60.0, time=at))
    now[0] = at
    assert view.elapsed() == pytest.approx(126.0)
    assert view.eta_seconds() == pytest.approx(480.0)


def test_eta_counts_a_module_not_yet_measured_at_the_others_mean_cost():
    now = [T0]
    view = started_view(now)
    finish(view, "t0", "a", T0 + 2, audio=60.0, wall=2.0)
    view(ev.TrackFinished(track="t0", ok=["a"], failed=["b"], audio_seconds=60.0, time=T0 + 2))
    now[0] = T0 + 2
    # a: 9 left at 2 s each; b: 10 left, no cost yet, taken as a's: 38 s of work at the pace so far.
    assert view.eta_seconds() == pytest.approx(38.0)


def test_tracks_with_failures_are_counted_when_the_failure_comes():
    view = started_view([T0])
    for i in range(4):  # four tracks fail module a while module b still works on them
        view(ev.TrackStarted(track=f"t{i}", modules=["a", "b"], time=T0))
        view(ev.ModuleFailed(track=f"t{i}", module="a", kind="bad_input", message="too short", time=T0 + 1))
    assert view.tracks_failed == 4
    view(ev.ModuleFailed(track="t0", module="b", kind="bad_input", message="too short", time=T0 + 2))
    view(ev.TrackFinished(track="t0", ok=[], failed=["a", "b"], audio_seconds=1.0, time=T0 + 2))
    assert view.tracks_failed == 4  # a track counts once, however many of its modules failed


def test_decode_is_running_while_a_track_decodes():
    from tui.dashboard.widgets.module_table import row_cells

    view = started_view([T0])
    view(ev.TrackStarted(track="t0", modules=["a", "b"], time=T0))
    assert row_cells(view.decode, False)[1][0] == "waiting"
    view(ev.ModuleStarted(track="t0", module="decode", worker_pid=9, time=T0))
    assert row_cells(view.decode, False)[1][0] == "running"
    view(ev.TrackDecoded(track="t0", sources={"mix": ["native"]}, wall_seconds=0.5, time=T0 + 1))
    assert row_cells(view.decode, False)[1][0] != "running" and view.decode.done == 1
    assert view.in_flight["t0"].finished == set(), "a decode is not one of the track's modules"
    # A decode that fails sends no track_decoded: the track's end ends it.
    view(ev.TrackStarted(track="t1", modules=["a"], time=T0 + 1))
    view(ev.ModuleStarted(track="t1", module="decode", worker_pid=9, time=T0 + 1))
    view(ev.TrackFinished(track="t1", ok=[], failed=["a"], audio_seconds=0.0, time=T0 + 2))
    assert view.decode.running == 0


def test_a_stopped_run_keeps_what_was_not_processed():
    view = started_view([T0])
    view(ev.RunFinished(stopped=True, wall_seconds=5.0, summary={}, left={"t3": ["a", "b"], "t4": ["b"]},
                        time=T0 + 5))
    assert view.left == {"t3": ["a", "b"], "t4": ["b"]}
    last = view.filtered_log("warning")[-1].message
    assert "not processed: 2 track(s), 3 module run(s): t3, t4 (list in" in last


def test_a_track_a_stop_came_before_is_not_counted_as_finished():
    view = started_view([T0])
    view(ev.TrackStarted(track="t0", modules=["a", "b"], time=T0))
    view(ev.TrackFinished(track="t0", ok=[], failed=[], not_run=["a", "b"], audio_seconds=0.0, time=T0 + 1))
    assert view.tracks_finished == 0 and "t0" not in view.in_flight
    view(ev.TrackStarted(track="t1", modules=["a", "b"], time=T0))
    view(ev.TrackFinished(track="t1", ok=["a"], failed=[], not_run=["b"], audio_seconds=3.0, time=T0 + 1))
    assert view.tracks_finished == 1
