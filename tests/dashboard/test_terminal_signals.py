"""SIGTERM and SIGHUP to a dashboard on a real terminal (a tmux pane): the terminal comes back
as it was (the shell, not the dashboard's screen), the workers die, the exit status says which
signal ended it."""
from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.support.dashboard import alive, tiny_dataset
from tui.paths import ROOT

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
DASHBOARD_FOOTER = "s stop  S stop now"


class Pane:
    """One tmux server of its own (``-L``): nothing of the user's tmux is touched."""

    def __init__(self, socket: str, width: int = 100, height: int = 30):
        self.socket = socket
        self.tmux("new-session", "-d", "-x", str(width), "-y", str(height), "bash --norc --noprofile")

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True,
                              text=True, timeout=30).stdout

    def type(self, line: str) -> None:
        self.tmux("send-keys", line, "Enter")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def alternate_screen(self) -> bool:
        return self.tmux("display", "-p", "#{alternate_on}").strip() == "1"

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


def wait_until(predicate, bound_s: float, what: str, pane: Pane | None = None) -> None:
    deadline = time.monotonic() + bound_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {bound_s} s: {what}" + (f"\n{pane.screen()}" if pane else ""))
        time.sleep(0.1)


def events(log_dir: Path) -> list[dict]:
    path = log_dir / "events.jsonl"
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()] if path.exists() else []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_ends_the_dashboard_and_gives_the_terminal_back(tmp_path, sig):
    ds = tiny_dataset(tmp_path / "ds", ["a", "b", "c"], seconds=1.0)
    log_dir, pidfile = tmp_path / "log", tmp_path / "pid"
    env = {"MIRDECK_EXTRA_BACKENDS": "tests.support.fake_backends.slowaudio",
           "MIRDECK_PCM_DIR": str(tmp_path / "shm"), "PYTHONPATH": str(ROOT)}
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    command = (f"cd {shlex.quote(str(ROOT))} && export {exports} && PS1='SHELL$ ' && "
               f"bash -c 'echo $$ > {pidfile}; exec {shlex.quote(sys.executable)} -m tui.cli run {ds} "
               f"--only slowaudio -j 2 --set slowaudio.seconds=60 --log-dir {log_dir}'; echo exit=$?")
    pane = Pane(f"mirdeck-test-{os.getpid()}-{sig.name}")
    try:
        pane.type(command)
        wait_until(lambda: any(e["event"] == "module_started" and e["module"] == "slowaudio"
                               for e in events(log_dir)), 120, "the run at work", pane)
        wait_until(lambda: DASHBOARD_FOOTER in pane.screen(), 30, "the dashboard on screen", pane)
        assert pane.alternate_screen()
        workers = [e["pid"] for e in events(log_dir) if e["event"] == "worker_started"]
        pid = int(pidfile.read_text())
        os.kill(pid, sig)
        wait_until(lambda: f"exit={128 + sig}" in pane.screen(), 60, "the dashboard to exit", pane)
        screen = pane.screen()
        lines = [line for line in screen.splitlines() if line.strip()]
        assert DASHBOARD_FOOTER not in screen and lines[-1].startswith("SHELL$"), screen
        assert not pane.alternate_screen(), "the terminal is back on its normal screen"
        # Raw mode is off: what is typed is echoed and run by the shell as usual.
        pane.type("echo typed-$((6*7))")
        wait_until(lambda: "typed-42" in pane.screen(), 10, "the shell to answer", pane)
        wait_until(lambda: not any(alive(p) for p in workers), 10, "no worker left")
    finally:
        pane.close()
