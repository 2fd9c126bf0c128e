"""Shared pieces of the run-service tests: a private environment, starting and watching services."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.dashboard import DASH_BACKENDS, alive
from tui.paths import ROOT


def service_env(cache: Path) -> dict[str, str]:
    """The environment of every process of a test: its own registry of runs, the test backends."""
    env = dict(os.environ)
    env.update(MIRDECK_CACHE_DIR=str(cache), MIRDECK_EXTRA_BACKENDS=DASH_BACKENDS,
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")])))
    return env


def mirdeck(*args: str) -> list[str]:
    return [sys.executable, "-m", "tui.cli", *args]


def slow_run_args(dataset: Path, steps: int = 6, step_seconds: float = 0.15, jobs: int = 2) -> list[str]:
    return ["run", str(dataset), "--only", "dash_slow", "-j", str(jobs),
            "--set", f"dash_slow.steps={steps}", "--set", f"dash_slow.step_seconds={step_seconds}"]


def start_detached(dataset: Path, env: dict[str, str], **slow) -> int:
    """``mirdeck run DATASET --detach`` in a subprocess; the service's pid."""
    done = subprocess.run(mirdeck(*slow_run_args(dataset, **slow), "--detach"), env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return service_pid(done.stdout)


def service_pid(text: str) -> int:
    found = re.search(r"run service (\d+) started", text)
    assert found, text
    return int(found.group(1))


def wait_until(predicate, timeout: float = 60.0, what: str = "condition", step: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def kill_if_alive(pid: int) -> None:
    if alive(pid):
        os.kill(pid, signal.SIGKILL)


def tty_of(pid: int) -> int:
    """The controlling terminal's device number of ``pid`` (0: none), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    return int(fields[4])


def session_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[3])
