"""Keep freed memory in the process for the next array instead of handing it back to the kernel.

glibc maps each block of 128 kB or more on its own and unmaps it when freed, and trims the top of
its heap when 128 kB lie free there, so code that makes and drops large NumPy temporaries pays a
page fault, and the kernel's zeroing, for every page of every one of them again. The timbral
models do that all track long: a fifth of their CPU time was in the kernel (3.1 of 15.5 CPU s on
two minutes of music, 244,000 page faults; 1.5 s and 13,000 with this). Here every block comes
from the heap and nothing is trimmed by itself, so freed pages are reused, from one track to
the next too (trimming after every track cost the next one 0.7 CPU s of faults on two minutes
of music). :func:`give_back` trims when the process holds more than the memory the engine
planned for the worker, so a worker never sits on more than its budget. Linux with glibc only;
elsewhere both calls do nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
# No block mapped on its own: a raised threshold would not do, glibc caps it at 32 MiB and a
# whole-track array is 160 MB on 7 minutes (the models make dozens).
MMAP_MAX = 0
TRIM_THRESHOLD_BYTES = 2**31 - 1  # never trim by itself: give_back() does, between tracks
TOP_PAD_BYTES = 64 * 2**20  # grow the heap in large steps: fewer brk calls as a track starts


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def keep_freed_memory() -> bool:
    """Have malloc serve and keep every block in its heap; True where it could."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_MAX, MMAP_MAX)
                and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
                and libc.mallopt(_M_TOP_PAD, TOP_PAD_BYTES))


def resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def give_back(above_bytes: int = 0) -> bool:
    """Return the free pages malloc holds to the kernel when this process's resident memory is
    over ``above_bytes`` (0: always); True where it trimmed."""
    libc = _libc()
    if libc is None or (above_bytes and resident_bytes() <= above_bytes):
        return False
    libc.malloc_trim(0)
    return True
