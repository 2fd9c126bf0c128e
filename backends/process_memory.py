"""A process's own peak resident memory.

``getrusage().ru_maxrss`` is not it on Linux: a child keeps its parent's high-water mark across
fork and exec, so a worker started by a process that held 2 GB reports at least 2 GB whatever it
used itself. ``VmHWM`` in /proc belongs to the process image and starts afresh at exec.
"""
from __future__ import annotations

import resource
import sys


def peak_rss_bytes(pid: int | str = "self") -> int:
    """Peak resident set of ``pid`` (default: this process) in bytes."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        if pid != "self":
            raise
    # Not Linux: the rusage figure (kilobytes here, bytes on macOS) is the best there is.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
