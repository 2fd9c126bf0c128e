"""The run's folder of decoded audio (``/dev/shm/mirdeck-<run>``) and the removal of folders that
runs killed before their clean-up (SIGKILL, a power cut of the session) left behind.

Each folder records the engine that owns it (pid and the process's start time, so a pid the
kernel has since given to another process does not keep a dead run's audio alive). A later run
removes only folders whose owner is gone: two runs at once never touch each other's audio.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from backends.pids import pid_alive

PREFIX = "mirdeck-"
OWNER_FILE = "owner"
# Folders written before the owner file existed end in the engine's pid: <date>-<time>-<pid>.
_NAME_PID = re.compile(r"-(\d+)$")


def process_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def create(folder: Path) -> None:
    """Make the run's folder and record this process as its owner."""
    folder.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    (folder / OWNER_FILE).write_text(f"{pid} {process_start_time(pid) or '-'}\n")


def _owner(folder: Path) -> tuple[int, str | None] | None:
    try:
        pid_text, _, started = (folder / OWNER_FILE).read_text().strip().partition(" ")
        return int(pid_text), (started if started and started != "-" else None)
    except (OSError, ValueError):
        match = _NAME_PID.search(folder.name)
        return (int(match.group(1)), None) if match else None


def owner_alive(folder: Path) -> bool:
    """Whether the engine that made ``folder`` still runs. Unknown owners count as alive: a
    folder this code cannot attribute is left alone."""
    owner = _owner(folder)
    if owner is None:
        return True
    pid, started = owner
    if not pid_alive(pid):
        return False
    if started is not None:
        now = process_start_time(pid)
        if now is not None and now != started:
            return False  # the pid was reused by a process started later
    return True


@dataclass
class Removed:
    folder: Path
    bytes: int


def _size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def remove_stale(base: Path) -> list[Removed]:
    """Remove the ``mirdeck-*`` folders under ``base`` whose owning engine is dead."""
    removed: list[Removed] = []
    try:
        candidates = sorted(base.glob(PREFIX + "*"))
    except OSError:
        return removed
    for folder in candidates:
        if folder.is_symlink() or not folder.is_dir() or owner_alive(folder):
            continue
        size = _size(folder)
        shutil.rmtree(folder, ignore_errors=True)
        if not folder.exists():
            removed.append(Removed(folder, size))
    return removed
