"""Faults a run must survive as a user meets them: the engine killed with SIGKILL, a stop
pressed mid-run, a tail of the run log while it runs. Real engine subprocesses, real workers."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.support.dashboard import alive, tiny_dataset
from tests.support.helpers import events_named, info_of
from tui.paths import ROOT
from tui.run import scratch
from tui.run.engine import EXIT_STOPPED, Engine, RunOptions
from tui.run.profiles import load
from tui.run.runlog import LEFT_FILE, RunLog, read_events

FAKES = ",".join(f"tests.support.fake_backends.{m}" for m in
                 ("slowaudio", "deaf", "slowprogress", "noop", "dependent"))


@pytest.fixture(autouse=True)
def fake_backends(monkeypatch, tmp_path):
    monkeypatch.setenv("MIRDECK_EXTRA_BACKENDS", FAKES)
    monkeypatch.setenv("MIRDECK_PCM_DIR", str(tmp_path / "shm"))


def start_run(dataset: Path, log_dir: Path, shm: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "MIRDECK_EXTRA_BACKENDS": FAKES, "MIRDECK_PCM_DIR": str(shm)}
    return subprocess.Popen([sys.executable, "-m", "tui.cli", "run", str(dataset), "--headless",
                             "--log-dir", str(log_dir), *args], cwd=ROOT, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def events_on_disk(log_dir: Path) -> list[dict]:
    path = log_dir / "events.jsonl"
    if not path.exists():
        return []
    lines = path.read_bytes().splitlines()
    return [orjson.loads(line) for line in lines if line.strip()]


def wait_until(predicate, bound_s: float, what: str) -> None:
    deadline = time.monotonic() + bound_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {bound_s} s: {what}")
        time.sleep(0.05)


def started(log_dir: Path, module: str) -> bool:
    return any(e["event"] == "module_started" and e["module"] == module for e in events_on_disk(log_dir))


def test_sigkill_of_the_engine_ends_its_workers_and_the_next_run_removes_its_audio(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ["a", "b", "c"], seconds=2.0)
    shm = tmp_path / "shm"
    # Folders a later run must leave alone: a live engine's (this test process) and one whose
    # owner cannot be told.
    live = shm / "mirdeck-live"
    scratch.create(live)
    unknown = shm / "mirdeck-no-owner"
    unknown.mkdir()

    run = start_run(ds, tmp_path / "log1", shm, "--only", "slowaudio,deaf", "-j", "2",
                    "--set", "slowaudio.seconds=60", "--set", "deaf.seconds=60")
    try:
        wait_until(lambda: started(tmp_path / "log1", "slowaudio") and started(tmp_path / "log1", "deaf"),
                   120, "both modules at work")
    except AssertionError:
        run.kill()
        raise AssertionError(run.communicate()[1]) from None
    on_disk = events_on_disk(tmp_path / "log1")
    workers = [e["pid"] for e in on_disk if e["event"] == "worker_started"]
    assert {e["module"] for e in on_disk if e["event"] == "worker_started"} >= {"decode", "slowaudio", "deaf"}
    ours = shm / f"mirdeck-{[e for e in os.listdir(shm) if e.endswith(f'-{run.pid}')][0][len('mirdeck-'):]}"
    assert list(ours.rglob("*.npy")), "decoded audio is in the run's scratch folder while it works"

    run.send_signal(signal.SIGKILL)
    run.communicate()
    # The deaf worker ignores SIGTERM (the parent-death signal): its watch on the engine ends it.
    wait_until(lambda: not any(alive(p) for p in workers), 10, f"workers {workers} gone after the engine died")
    # The events written before the kill are on disk (no buffer died with the engine).
    names = [e["event"] for e in events_on_disk(tmp_path / "log1")]
    assert names[0] == "run_started" and "module_started" in names and "run_finished" not in names
    assert ours.is_dir(), "SIGKILL skips the clean-up: the audio is still there"

    again = start_run(ds, tmp_path / "log2", shm, "--only", "noop")
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert not ours.exists(), "the next run removed the dead run's decoded audio"
    assert "removed 1 decoded-audio folder(s) of runs that were killed" in out and ours.name in out
    assert live.is_dir() and unknown.is_dir(), "folders of live or unknown owners are left alone"


def test_stale_folders_are_judged_by_their_owner_pid_and_its_start_time(tmp_path):
    mine = tmp_path / "mirdeck-20260101-000000-1"
    scratch.create(mine)
    assert scratch.owner_alive(mine)
    # Same pid, another start time: the pid was reused, the run that wrote this is gone.
    (mine / scratch.OWNER_FILE).write_text(f"{os.getpid()} 1\n")
    assert not scratch.owner_alive(mine)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    old_style = tmp_path / f"mirdeck-20260101-000000-{child.pid}"  # written before owner files
    old_style.mkdir()
    (old_style / "000000").mkdir()
    (old_style / "000000" / "mix@native.npy").write_bytes(b"x" * 4096)
    removed = scratch.remove_stale(tmp_path)
    assert sorted(r.folder.name for r in removed) == sorted([mine.name, old_style.name])
    assert sum(r.bytes for r in removed) >= 4096


def test_each_event_is_in_the_file_when_it_happens(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ["a", "b"])
    engine = Engine(ds, load("cpu"), RunOptions(only=["slowprogress"], jobs=1, log_dir=tmp_path / "log",
                                                module_options={"slowprogress": {"steps": 2, "step_seconds": 0.01}}))
    engine.subscribe(RunLog(engine.log_dir))
    seen_on_disk: list[list[str]] = []

    def tail(event) -> None:  # what `tail -f events.jsonl` shows at this moment of the run
        if event.name == "module_finished" and not seen_on_disk:
            seen_on_disk.append([e["event"] for e in read_events(engine.log_dir / "events.jsonl")])

    engine.subscribe(tail)
    asyncio.run(engine.run())
    first = seen_on_disk[0]
    assert first[0] == "run_started" and "track_started" in first and "module_started" in first
    assert first[-1] == "module_finished" and "run_finished" not in first


def test_graceful_stop_from_the_command_line_says_what_is_left_and_exits_3(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", [f"t{i}" for i in range(8)])
    run = start_run(ds, tmp_path / "log", tmp_path / "shm", "--only", "slowprogress", "-j", "1",
                    "--set", "slowprogress.steps=10", "--set", "slowprogress.step_seconds=0.1")
    wait_until(lambda: started(tmp_path / "log", "slowprogress"), 120, "the first request")
    run.send_signal(signal.SIGINT)  # Ctrl-C once: a graceful stop
    out, err = run.communicate(timeout=120)
    assert run.returncode == EXIT_STOPPED, (out, err)
    assert "nothing new starts" in err
    done = [t for t in (f"t{i}" for i in range(8)) if (ds / t / f"{t}.INFO").exists()]
    assert done == ["t0"], "the request being computed finished; no queued track started"
    assert info_of(ds / "t0")["slow_ok"] == 1
    assert "not processed: 7 track(s), 7 module run(s)" in out
    assert all(f"t{i}: slowprogress" in out for i in range(1, 8))
    listed = (tmp_path / "log" / LEFT_FILE).read_text().splitlines()
    assert listed == [f"t{i}\tslowprogress" for i in range(1, 8)]
    end = [e for e in events_on_disk(tmp_path / "log") if e["event"] == "run_finished"][0]
    assert end["stopped"] and sorted(end["left"]) == [f"t{i}" for i in range(1, 8)]
    assert not any(e["event"] == "module_failed" for e in events_on_disk(tmp_path / "log"))


def test_a_stop_leaves_dependent_modules_unrun_not_failed(tmp_path):
    ds = tiny_dataset(tmp_path / "ds", ["a", "b", "c"])
    engine = Engine(ds, load("cpu"), RunOptions(only=["dependent"], jobs=2, log_dir=tmp_path / "log"))
    seen = []
    engine.subscribe(seen.append)
    engine.subscribe(lambda e: engine.stop() if e.name == "module_started" and e.module == "audio_info" else None)
    asyncio.run(engine.run())
    end = events_named(seen, "run_finished")[0]
    ran = {(e.track, e.module) for e in events_named(seen, "module_finished")}
    assert ("a", "audio_info") in ran and not events_named(seen, "module_failed")
    planned = {(t, m) for t in ("a", "b", "c") for m in ("audio_info", "dependent")}
    assert {(t, m) for t, ms in end.left.items() for m in ms} == planned - ran
    assert ("b", "dependent") in planned - ran, "its input was stopped, so it did not run: not a failure"
