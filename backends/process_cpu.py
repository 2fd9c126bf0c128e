"""CPU seconds a worker spent, its helper processes included.

Wall time says little on a busy machine (a module waiting for a core looks slow); CPU time is what
the module cost. A worker's helpers (llama-server, llama-mtmd-cli) are its children: those still
running are read from /proc, those that ended from the kernel's reaped-children total.
"""
from __future__ import annotations

import glob
import os


def _children(pid: int) -> list[int] | None:
    """Direct children from /proc/PID/task/*/children (no scan of every process), None where the
    kernel does not offer that file."""
    files = glob.glob(f"/proc/{pid}/task/*/children")
    if not files:
        return None
    found: list[int] = []
    for name in files:
        try:
            with open(name) as fh:
                found += [int(p) for p in fh.read().split()]
        except OSError:
            continue
    return found


def _descendants(direct: list[int]) -> list[int]:
    found, frontier = [], list(direct)
    while frontier:  # per request this is one small read when the worker has no helper running
        pid = frontier.pop()
        found.append(pid)
        frontier += _children(pid) or []
    return found


def tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process, its live descendants and its reaped children."""
    times = os.times()
    total = times.user + times.system + times.children_user + times.children_system
    direct = _children(os.getpid())
    if direct is None:  # no /proc children files: psutil walks the process table
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                cpu = child.cpu_times()
                total += cpu.user + cpu.system
            except psutil.Error:
                continue
        return total
    ticks = os.sysconf("SC_CLK_TCK")
    for pid in _descendants(direct):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                # Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):
            continue
    return total
