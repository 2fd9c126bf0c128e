"""Pilot tests: the real dashboard driving the real engine, real worker processes, real files."""
from __future__ import annotations

import pytest

from tests.support.dashboard import DASH_BACKENDS, alive, engine_for, plain, sync, tiny_dataset, wait_for
from tui import demo
from tui.dashboard.app import MirdeckApp
from tui.run.store import read_info

SIZE = (120, 40)


@pytest.fixture(autouse=True)
def _dash_backends(monkeypatch):
    monkeypatch.setenv("MIRDECK_EXTRA_BACKENDS", DASH_BACKENDS)


def worker_pids(view) -> set[int]:
    return set(view.worker_module)


@sync
async def test_setup_choose_profile_start_watch_open_track_on_the_demo(tmp_path):
    dataset = tmp_path / "demo"
    truth = demo.create(dataset)
    app = MirdeckApp(dataset=dataset)
    async with app.run_test(size=SIZE) as pilot:
        setup = app.screen
        await wait_for(pilot, lambda: setup.summary is not None, what="the dataset scan")
        summary = plain(setup.query_one("#dataset-summary"))
        assert f"{len(truth)} tracks found" in summary
        # Pick another profile, then back: the environment panel names what changed.
        profiles = setup.query_one("#profiles")
        profiles.focus()
        await pilot.press("up")
        await pilot.pause()
        first = setup.profile.name
        await pilot.press("down")
        await pilot.pause()
        assert setup.profile.name == "cpu" and first != "cpu"
        env_text = plain(setup.query_one("#profile-env"))
        assert f"changes from {first}" in env_text and "CUDA_VISIBLE_DEVICES" in env_text
        # Only audio_info runs: untick every other module (test backends, model-based ones).
        table = setup.query_one("#module-list")
        table.focus()
        for name in [n for n, on in setup.chosen.items() if on and n != "audio_info"]:
            table.move_cursor(row=table.get_row_index(name), column=0)
            await pilot.press("space")
        assert [n for n, on in setup.chosen.items() if on] == ["audio_info"]
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.view.finished_at is not None, what="the run to finish")
        await pilot.pause(0.3)
        assert app.view.modules["audio_info"].done == len(truth)
        live = app.screen
        cells = live.query_one("#modules").cells("audio_info")
        assert cells[1] == "done" and cells[2] == f"{len(truth)}"
        for name in truth:
            info = read_info(dataset / name / f"{name}.INFO")
            assert info["_mirdeck"]["audio_info"]["status"] == "ok"
            assert abs(info["duration_seconds"] - truth[name]["seconds"]) < 0.01
        await pilot.press("t")
        await pilot.pause(0.3)
        report = plain(app.screen.query_one("#track-report"))
        assert "duration_seconds" in report and "provenance" in report
        await pilot.press("escape")
    assert not any(alive(pid) for pid in worker_pids(app.view))


@sync
async def test_graceful_stop_finishes_tracks_in_flight_and_shuts_workers_down_cleanly(tmp_path):
    dataset = tiny_dataset(tmp_path / "ds", [f"Track {i:02d}" for i in range(12)])
    engine = engine_for(dataset, tmp_path, only=["dash_slow"],
                        module_options={"dash_slow": {"steps": 4, "step_seconds": 0.1}})
    exits = []
    engine.subscribe(lambda e: exits.append(e) if e.name == "worker_exited" else None)
    app = MirdeckApp(engine=engine, probe_interval=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.view.modules.get("dash_slow") and app.view.modules["dash_slow"].done >= 1,
                       what="a first finished track")
        await pilot.press("s")
        assert app.view.stopping == "graceful"
        await wait_for(pilot, lambda: app.view.finished_at is not None, what="the graceful stop")
        await pilot.pause(0.3)
        assert "stopped in" in plain(app.screen.query_one("#run-header"))
    assert app.view.stopped
    done = [f for f in sorted(dataset.iterdir()) if (f / f"{f.name}.INFO").exists()]
    assert 1 <= len(done) < 12, "a graceful stop finishes what is in flight but starts nothing new"
    for folder in done:  # every track that was started was finished and written completely
        info = read_info(folder / f"{folder.name}.INFO")
        assert info["dash_slow_ok"] == 1 and info["_mirdeck"]["dash_slow"]["status"] == "ok"
    assert exits and all(e.reason == "shutdown" for e in exits)
    assert not any(alive(e.pid) for e in exits)


@sync
async def test_worker_crash_shows_the_error_with_its_stderr_and_the_run_goes_on(tmp_path):
    names = ["A first", "B crash here", "C last"]
    dataset = tiny_dataset(tmp_path / "ds", names)
    engine = engine_for(dataset, tmp_path, only=["dash_crash"], jobs=1)
    app = MirdeckApp(engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.view.finished_at is not None, what="the run")
        await pilot.pause(0.3)
        row = app.screen.query_one("#modules").cells("dash_crash")
        assert row[2] == "2" and row[3] == "1"  # done, fail
        log_text = "\n".join(str(line.text) for line in app.screen.query_one("#log").lines)
        assert "B crash here" in log_text and "crash" in log_text
        await pilot.press("t")  # opens the newest failing track
        await pilot.pause(0.3)
        report = plain(app.screen.query_one("#track-report"))
        assert "B crash here" in report
        assert "error in dash_crash" in report
        assert "dash_crash: about to die" in report  # the worker's stderr line before it died
    for name in ("A first", "C last"):
        assert read_info(dataset / name / f"{name}.INFO")["dash_crash_frames"] == 4000
    crashed = read_info(dataset / "B crash here" / "B crash here.INFO")
    assert "dash_crash_frames" not in crashed
    assert crashed["_mirdeck"]["dash_crash"]["error"]["kind"] == "crash"


@sync
async def test_pause_holds_new_work_and_resume_finishes_the_run(tmp_path):
    dataset = tiny_dataset(tmp_path / "ds", [f"T{i:02d}" for i in range(16)])
    engine = engine_for(dataset, tmp_path, only=["dash_slow"],
                        module_options={"dash_slow": {"steps": 3, "step_seconds": 0.1}})
    app = MirdeckApp(engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.view.tracks_started >= 1, what="the first track")
        await pilot.press("space")
        assert engine.paused and app.view.paused
        await pilot.pause(1.0)  # in-flight requests drain
        started = app.view.tracks_started
        await pilot.pause(1.0)
        assert app.view.tracks_started == started < 16, "no new track starts while paused"
        assert "PAUSED" in plain(app.screen.query_one("#run-header"))
        await pilot.press("space")
        await wait_for(pilot, lambda: app.view.finished_at is not None, what="the resumed run")
    assert app.view.modules["dash_slow"].done == 16 and not app.view.stopped


@sync
async def test_quit_while_running_stops_gracefully_and_leaves_no_worker(tmp_path):
    dataset = tiny_dataset(tmp_path / "ds", [f"T{i}" for i in range(20)])
    engine = engine_for(dataset, tmp_path, only=["dash_slow"],
                        module_options={"dash_slow": {"steps": 3, "step_seconds": 0.1}})
    app = MirdeckApp(engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: bool(app.view.modules.get("dash_slow") and app.view.modules["dash_slow"].pids),
                       what="a worker")
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running or app.view.finished_at is not None, what="quit")
    assert app.view.stopped
    assert not any(alive(pid) for pid in worker_pids(app.view))


@sync
async def test_immediate_stop_kills_workers_at_once(tmp_path):
    dataset = tiny_dataset(tmp_path / "ds", [f"T{i}" for i in range(8)])
    engine = engine_for(dataset, tmp_path, only=["dash_slow"],
                        module_options={"dash_slow": {"steps": 50, "step_seconds": 0.1}})
    app = MirdeckApp(engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.view.modules.get("dash_slow") is not None
                       and app.view.modules["dash_slow"].running >= 1, what="a request in flight")
        await pilot.press("S")
        await wait_for(pilot, lambda: app.view.finished_at is not None, timeout=15, what="the immediate stop")
    assert app.view.stopped and app.view.modules["dash_slow"].done == 0
    assert not any(alive(pid) for pid in worker_pids(app.view))
    assert not any((f / f"{f.name}.INFO").exists() for f in dataset.iterdir())


@sync
async def test_an_engine_error_is_shown_and_quitting_still_works(tmp_path):
    dataset = tiny_dataset(tmp_path / "ds", ["T0"])
    engine = engine_for(dataset, tmp_path, only=["dash_fast"])

    async def broken_run():
        raise RuntimeError("disk on fire")

    engine.run = broken_run
    app = MirdeckApp(engine=engine)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: bool(app.view.fatal), what="the engine error")
        await pilot.pause(0.3)
        assert "engine error: RuntimeError('disk on fire')" in plain(app.screen.query_one("#run-header"))
        log_text = "\n".join(str(line.text) for line in app.screen.query_one("#log").lines)
        assert "disk on fire" in log_text
        await pilot.press("q")
    assert app.return_value == 2  # what run_dashboard returns as the exit code
