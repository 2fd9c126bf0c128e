"""``mirdeck run --detach``, ``attach``, ``status``: real service processes, real sockets, real workers."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.dashboard import alive, tiny_dataset, wait_for
from tests.support.service import (
    kill_if_alive,
    mirdeck,
    service_pid,
    session_of,
    slow_run_args,
    start_detached,
    tty_of,
    wait_until,
)
from tui.dashboard.attach import AttachedApp
from tui.dashboard.runview import RunView
from tui.run.store import read_info
from tui.service import registry
from tui.service.client import RemoteRun, control, request, status
from tui.service.server import RunServer
from tui.service.sockets import addressable

SIZE = (120, 40)
pytestmark = pytest.mark.slow



def tracks(root: Path, count: int) -> Path:
    return tiny_dataset(root, [f"Track {i:02d}" for i in range(count)])


def record_of(dataset: Path) -> registry.ServiceRecord:
    return wait_until(lambda: registry.read_record(dataset), 30, "the service's record")


def done_count(dataset: Path) -> int:
    return status(record_of(dataset))["units_done"]


def state(view: RunView) -> dict:
    row = view.modules["dash_slow"]
    return {"planned": row.planned, "done": row.done, "failed": row.failed, "running": row.running,
            "tracks": (view.tracks_total, view.tracks_started, view.tracks_finished, view.tracks_failed),
            "in_flight": sorted(view.in_flight), "finished": view.finished_at, "stopped": view.stopped}


def run_async(coro):
    return asyncio.run(coro)


def test_detached_run_outlives_its_terminal_and_a_late_dashboard_sees_what_an_early_client_saw(tmp_path, env):
    dataset = tracks(tmp_path / "ds", 10)
    # A terminal: a shell on a pseudo-terminal, in its own session, that starts the run and waits.
    command = " ".join(mirdeck(*slow_run_args(dataset, steps=8, step_seconds=0.12), "--detach"))
    pid, master = os.forkpty()
    if pid == 0:  # the child: exec at once
        os.execve("/bin/bash", ["bash", "-c", f"{command}; sleep 120"], env)
    said = b""
    deadline = time.monotonic() + 120
    while b"watch it" not in said and time.monotonic() < deadline:
        try:
            said += os.read(master, 4096)
        except OSError:
            break
    service = service_pid(said.decode(errors="replace"))
    # The service is nobody's child in that terminal: another session, no controlling tty, output to the run log.
    assert session_of(service) != session_of(pid) and tty_of(pid) != 0 and tty_of(service) == 0
    record = record_of(dataset)
    assert os.readlink(f"/proc/{service}/fd/1") == str(Path(record.log_dir) / "service.log")

    async def scenario():
        early_view = RunView()
        early = RemoteRun(record)
        early.subscribe(early_view)
        early_task = asyncio.create_task(early.run())
        await asyncio.wait_for(early.caught_up.wait(), 30)
        # The terminal goes: its whole process group is killed and the pty closed (SIGHUP).
        os.killpg(pid, signal.SIGKILL)
        os.close(master)
        os.waitpid(pid, 0)
        await asyncio.sleep(0.5)
        assert alive(service)
        while early_view.modules["dash_slow"].done < 3:
            await asyncio.sleep(0.1)
        # Paused while the late client starts (however slow this machine is, the run is still going
        # when it attaches); it resumes the run once it has caught up.
        await request(record.socket, {"type": "control", "action": "pause"})
        app = AttachedApp(RemoteRun(record), probe_interval=0)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.engine.caught_up.is_set(), what="the replay")
            seen_at_attach = app.view.modules["dash_slow"].done
            assert seen_at_attach >= 3  # the run so far, not just what comes next
            await wait_for(pilot, lambda: app.view.paused, 10, "the pause to show")
            await pilot.press("space")  # resume, from this client
            await wait_for(pilot, lambda: app.view.finished_at is not None, 120, "the end of the run")
            await pilot.pause(0.3)
            late = state(app.view)
            cells = app.screen.query_one("#modules").cells("dash_slow")
        await asyncio.wait_for(early_task, 30)
        return seen_at_attach, late, state(early_view), cells

    seen_at_attach, late, early, cells = run_async(scenario())
    assert late == early
    assert seen_at_attach < late["done"] == 10 and not late["stopped"]
    assert cells[1] == "done" and cells[2] == "10"
    for folder in sorted(p for p in dataset.iterdir() if p.is_dir() and not p.name.startswith(".")):
        assert read_info(folder / f"{folder.name}.INFO")["dash_slow_ok"] == 1
    wait_until(lambda: not alive(service), 30, "the service to exit after the run")
    assert registry.read_record(dataset) is None and not Path(record.socket).exists()


def test_two_clients_one_leaves_the_other_stops_the_run_gracefully(tmp_path, env):
    dataset = tracks(tmp_path / "ds", 14)
    service = start_detached(dataset, env, steps=20, step_seconds=0.15)  # stopped long before its end
    record = record_of(dataset)
    watcher = subprocess.Popen(mirdeck("attach", str(dataset), "--jsonl"), env=env, stdout=subprocess.PIPE,
                               text=True)
    try:
        async def scenario():
            first = AttachedApp(RemoteRun(record), probe_interval=0)
            async with first.run_test(size=SIZE) as pilot:
                await wait_for(pilot, lambda: first.view.modules.get("dash_slow")
                               and first.view.modules["dash_slow"].done >= 1, 60, "a finished track")
                await pilot.press("q")  # this client leaves; nothing is asked of the run
            assert first.view.finished_at is None
            await asyncio.sleep(0.5)
            left_at = await request(record.socket, {"type": "status"})
            assert alive(service) and not left_at["stopping"] and left_at["clients"] == 1  # the jsonl watcher
            while (await request(record.socket, {"type": "status"}))["units_done"] <= left_at["units_done"]:
                # the run goes on without it
                await asyncio.sleep(0.1)
            second = AttachedApp(RemoteRun(record), probe_interval=0)
            async with second.run_test(size=SIZE) as pilot:
                await wait_for(pilot, lambda: second.engine.caught_up.is_set(), what="the replay")
                await pilot.press("s")  # graceful stop of the run, for every client
                await wait_for(pilot, lambda: second.view.stopping == "graceful", 10, "the stop to be echoed")
                await wait_for(pilot, lambda: second.view.finished_at is not None, 60, "the stopped run's end")
                return state(second.view)

        final = run_async(scenario())
        lines = [json.loads(line) for line in watcher.stdout]  # the watcher read to the end of the run
        assert watcher.wait(30) == 0
    finally:
        kill_if_alive(watcher.pid)
    assert final["stopped"] and 0 < final["done"] < 14 and final["in_flight"] == []
    names = [e["event"] for e in lines]
    assert names[0] == "run_started" and names[-1] == "run_finished" and lines[-1]["stopped"]
    started = {e["track"] for e in lines if e["event"] == "track_started"}
    finished = {e["track"]: e for e in lines if e["event"] == "track_finished"}
    # A graceful stop finishes what is computing and sends nothing new: a started track either got
    # its module done or says it was not run (issue 15: stop means start nothing new).
    assert started == set(finished)
    done = [t for t, e in finished.items() if e["ok"] == ["dash_slow"]]
    assert all(e["ok"] == ["dash_slow"] or (e.get("not_run") == ["dash_slow"] and not e["failed"])
               for e in finished.values())
    assert {e["reason"] for e in lines if e["event"] == "worker_exited"} == {"shutdown"}
    assert len(done) == final["done"] < 14
    wait_until(lambda: not alive(service), 30, "the service to exit")


def test_kill_9_of_the_service_leaves_no_worker_no_broken_info_and_a_new_run_resumes(tmp_path, env):
    dataset = tracks(tmp_path / "ds", 12)
    service = start_detached(dataset, env, steps=10, step_seconds=0.2)
    record = record_of(dataset)
    wait_until(lambda: done_count(dataset) >= 2, 60, "two finished tracks")

    async def workers() -> set[int]:
        view = RunView()
        remote = RemoteRun(record)
        remote.subscribe(view)
        task = asyncio.create_task(remote.run())
        await asyncio.wait_for(remote.caught_up.wait(), 30)
        task.cancel()
        return set(view.modules["dash_slow"].pids)

    pids = run_async(workers())
    assert pids and all(alive(p) for p in pids)
    os.kill(service, signal.SIGKILL)  # mid-track: each worker is busy
    wait_until(lambda: not any(alive(p) for p in pids), 30, "the workers to die with the service")
    # The kernel drops the lock with the process (it may still be exiting when its workers are gone).
    wait_until(lambda: registry.read_record(dataset) is None, 10, "the service's lock to be dropped")
    infos = [f / f"{f.name}.INFO" for f in dataset.iterdir() if f.is_dir() and not f.name.startswith(".")]
    written = [p for p in infos if p.exists()]
    for path in written:
        assert json.loads(path.read_text())["_mirdeck"]["dash_slow"]["status"] == "ok"
    assert 2 <= len(written) < 12
    assert not [p for p in dataset.rglob("*") if ".tmp" in p.name or p.name.endswith(".part")]
    done = subprocess.run(mirdeck(*slow_run_args(dataset, steps=1, step_seconds=0.01), "--headless"), env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert f"{len(written)} tracks already done, skipped" in done.stdout
    assert all(read_info(p)["dash_slow_ok"] == 1 for p in infos)


def test_the_socket_is_the_users_alone(tmp_path, env):
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    for folder in (open_dir, *open_dir.parents):  # let another user walk to the dataset ...
        if str(folder) in ("/", "/tmp"):
            break
        os.chmod(folder, os.stat(folder).st_mode | 0o711)
    dataset = tracks(open_dir / "ds", 6)
    service = start_detached(dataset, env, steps=20, step_seconds=0.2)
    path = Path(record_of(dataset).socket)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    probe = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect(sys.argv[1])\n"
             "except PermissionError:\n    print('refused')\nelse:\n    print('connected')\n")

    def connect_as(uid: int) -> str:
        # The system's Python: the other user may not be able to enter this checkout's virtual environment.
        python = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
        # From the run folder, by a relative address: the absolute one is longer than AF_UNIX allows.
        done = subprocess.run([python, "-c", probe, f"{path.parent.name}/{path.name}"], capture_output=True,
                              text=True, preexec_fn=lambda: os.setuid(uid), timeout=30, cwd=path.parent.parent)
        assert done.stdout.strip() in ("refused", "connected"), done.stderr
        return done.stdout.strip()

    if os.getuid() != 0:
        pytest.skip("connecting as another user needs root; the mode bits are checked above")
    nobody = 65534
    assert connect_as(nobody) == "refused"
    os.chmod(path.parent, 0o711)  # ... and even through an opened folder, the socket's own bits refuse
    try:
        assert connect_as(nobody) == "refused"
    finally:
        os.chmod(path.parent, 0o700)
    me = socket.socket(socket.AF_UNIX)
    with addressable(path) as address:
        me.connect(address)  # its user gets in
    me.close()
    assert control(record_of(dataset), "stop_now")["type"] == "ok"
    wait_until(lambda: not alive(service), 30, "the stopped service to exit")


def test_status_lists_runs_in_progress_and_a_second_run_watches_the_first(tmp_path, env):
    dataset = tracks(tmp_path / "ds", 8)
    service = start_detached(dataset, env, steps=20, step_seconds=0.15)  # 3 s a track: live while we look
    wait_until(lambda: done_count(dataset) >= 1, 60, "a finished track")
    shown = subprocess.run(mirdeck("status"), env=env, capture_output=True, text=True, timeout=30).stdout
    header, row = shown.splitlines()[:2]
    assert header.split()[:5] == ["DATASET", "PID", "STATE", "PROGRESS", "ETA"]
    assert row.startswith(str(dataset)) and f" {service} " in row and " running " in row and "/8 (" in row
    as_json = json.loads(subprocess.run(mirdeck("status", "--json"), env=env, capture_output=True, text=True,
                                        timeout=30).stdout)
    assert as_json["pid"] == service and as_json["units_total"] == 8 and as_json["eta_seconds"] > 0
    again = subprocess.run(mirdeck(*slow_run_args(dataset), "--detach"), env=env, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 0 and "already in progress" in again.stdout and "attach" in again.stdout
    # Without --detach and without a terminal the second run prints the first one's progress to its end.
    watched = subprocess.run(mirdeck(*slow_run_args(dataset), "--verbose"), env=env, capture_output=True, text=True,
                             timeout=120)
    assert watched.returncode == 0 and "watching it instead" in watched.stderr
    assert "[8/8]" in watched.stdout and "finished" in watched.stdout
    assert len(list((dataset / ".mirdeck" / "runs").iterdir())) == 1  # one run, never two
    wait_until(lambda: not alive(service), 30, "the service to exit")
    assert "no run in progress" in subprocess.run(mirdeck("status"), env=env, capture_output=True,
                                                  text=True).stdout


def test_a_run_in_a_terminal_can_be_watched_too(tmp_path, env):
    dataset = tracks(tmp_path / "ds", 6)
    owner = subprocess.Popen(mirdeck(*slow_run_args(dataset, steps=20, step_seconds=0.15), "--headless"), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        record = record_of(dataset)
        assert record.pid == owner.pid and not record.detached
        watched = subprocess.run(mirdeck("attach", "--jsonl"), env=env, capture_output=True, text=True, timeout=120)
        assert owner.wait(60) == 0
    finally:
        kill_if_alive(owner.pid)
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert events[0]["event"] == "run_started" and events[-1]["event"] == "run_finished"
    assert sum(e["event"] == "module_finished" for e in events) == 6
    assert registry.read_record(dataset) is None


def test_attach_without_a_run_says_so(tmp_path, env):
    done = subprocess.run(mirdeck("attach", str(tmp_path)), env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "no run in progress on" in done.stderr


def test_the_detach_key_hands_a_terminal_run_to_a_service_that_finishes_it(tmp_path, env):
    from tests.support.dashboard import engine_for
    from tui.dashboard.app import MirdeckApp

    dataset = tracks(tmp_path / "ds", 10)
    engine = engine_for(dataset, tmp_path, only=["dash_slow"],
                        module_options={"dash_slow": {"steps": 8, "step_seconds": 0.1}})
    lock = registry.DatasetLock(dataset).acquire()  # as 'mirdeck run' does
    server = RunServer(engine, lock)
    engine.subscribe(server)

    async def scenario():
        app = MirdeckApp(engine=engine, probe_interval=0)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.view.modules.get("dash_slow")
                           and app.view.modules["dash_slow"].done >= 2, 60, "two finished tracks")
            await pilot.press("d")
            await wait_for(pilot, lambda: app.handed_over is not None or not app.is_running, 120, "the hand-over")
        return app

    try:
        app = run_async(scenario())
    finally:
        server.close()
    here = app.view.modules["dash_slow"].done
    assert app.view.stopped and app.view.in_flight == {} and 2 <= here < 10
    record = app.handed_over
    assert record is not None and record.pid != os.getpid() and record.detached
    wait_until(lambda: not alive(record.pid), 120, "the service to finish the run")
    # The run folder given (--log-dir) holds both parts; the service's part starts at the second run_started.
    events = [json.loads(line) for line in (Path(record.log_dir) / "events.jsonl").read_text().splitlines()]
    starts = [i for i, e in enumerate(events) if e["event"] == "run_started"]
    assert len(starts) == 2 and starts[0] == 0
    events = events[starts[1]:]
    assert events[0]["skipped"] == {"dash_slow": here} and not events[-1]["stopped"]
    assert sum(e["event"] == "module_finished" for e in events) == 10 - here
    for folder in sorted(p for p in dataset.iterdir() if p.is_dir() and not p.name.startswith(".")):
        assert read_info(folder / f"{folder.name}.INFO")["dash_slow_ok"] == 1


def test_stop_from_another_terminal_finishes_what_is_running_and_says_what_is_left(tmp_path, env):
    dataset = tracks(tmp_path / "ds", 14)
    service = start_detached(dataset, env, steps=20, step_seconds=0.15)
    record = record_of(dataset)
    try:
        wait_until(lambda: done_count(dataset) >= 1, 60, "a finished track")
        out = subprocess.run(mirdeck("stop", str(dataset)), env=env, capture_output=True, text=True,
                             timeout=120)
        wait_until(lambda: not alive(service), 30, "the service to exit")
    finally:
        kill_if_alive(service)
    assert out.returncode == 0, out.stderr
    assert f"stopping the run on {dataset}" in out.stdout
    done = sorted(p.parent.name for p in dataset.glob("*/*.INFO"))
    left_file = Path(record.log_dir) / "not-processed.txt"
    left = [line for line in left_file.read_text().splitlines() if line.strip()]
    assert 0 < len(done) < 14 and len(left) == 14 - len(done)
    assert f"{14 - len(done)} track(s) not processed, listed in {left_file}" in out.stdout
    assert not any(name in line for name in done for line in left)
    again = subprocess.run(mirdeck("stop", str(dataset)), env=env, capture_output=True, text=True,
                           timeout=60)
    assert again.returncode == 2 and f"no run in progress on {dataset}" in again.stderr
