"""CPU seconds a worker spent, its helper processes included.

Wall time says little on a busy machine (a module waiting for a core looks slow); CPU time is what
the module cost. A worker's helpers (llama-server, llama-mtmd-cli) are its children: those still
running are read from /proc through psutil, those that ended from the kernel's reaped-children total.
"""
from __future__ import annotations

import os


def tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process, its live descendants and its reaped children."""
    times = os.times()
    total = times.user + times.system + times.children_user + times.children_system
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                cpu = child.cpu_times()
                total += cpu.user + cpu.system
            except psutil.Error:
                continue
    except ImportError:  # pragma: no cover - psutil is a dependency
        pass
    return total
