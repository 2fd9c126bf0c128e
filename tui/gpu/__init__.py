"""The GPU probe: a small typed library the screen (or anything else) reads snapshots from.

``open_probe()`` picks the first source that works here: NVML (NVIDIA), amdsmi (ROCm), sysfs +
fdinfo (any amdgpu kernel driver), else a probe that says plainly that there is no GPU.
``CachedProbe`` keeps a reading for a short time so several views cost one read.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Protocol

from tui.gpu.model import DeviceReading, GpuSnapshot, ProbeUnavailable, ProcessMemory

__all__ = ["CachedProbe", "DeviceReading", "GpuProbe", "GpuSnapshot", "NullProbe", "ProbeUnavailable",
           "ProcessMemory", "open_probe"]


class GpuProbe(Protocol):
    source: str

    def read(self, pids: Iterable[int] = ()) -> GpuSnapshot: ...

    def close(self) -> None: ...


class NullProbe:
    """No usable GPU source: every reading says why, nothing else pretends."""

    source = "none"

    def __init__(self, reason: str = "no GPU found"):
        self.reason = reason

    def read(self, pids: Iterable[int] = ()) -> GpuSnapshot:
        return GpuSnapshot(source=self.source, note=self.reason)

    def close(self) -> None:
        pass


def _candidates() -> list[tuple[str, Callable[[], GpuProbe]]]:
    from tui.gpu.amd import AmdSmiProbe
    from tui.gpu.nvml import NvmlProbe
    from tui.gpu.sysfs import SysfsProbe

    return [("nvml", NvmlProbe), ("amdsmi", AmdSmiProbe), ("sysfs", SysfsProbe)]


def open_probe(prefer: str | None = None) -> GpuProbe:
    """The first GPU source that works on this machine (or only ``prefer``: nvml, amdsmi, sysfs)."""
    reasons = []
    for name, factory in _candidates():
        if prefer and name != prefer:
            continue
        try:
            return factory()
        except ProbeUnavailable as exc:
            reasons.append(f"{name}: {exc}")
    return NullProbe("no GPU found (" + "; ".join(reasons) + ")")


class CachedProbe:
    """Wraps a probe: a reading younger than ``ttl`` seconds (for the same pids) is reused.

    Thread-safe, so the screen can read from a worker thread while another view reads too.
    """

    def __init__(self, probe: GpuProbe, ttl: float = 0.5, clock: Callable[[], float] = time.monotonic):
        self.probe, self.ttl, self.clock = probe, ttl, clock
        self.source = probe.source
        self._lock = threading.Lock()
        self._last: tuple[float, frozenset[int], GpuSnapshot] | None = None

    def read(self, pids: Iterable[int] = ()) -> GpuSnapshot:
        key = frozenset(pids)
        with self._lock:
            now = self.clock()
            if self._last and self._last[1] == key and now - self._last[0] < self.ttl:
                return self._last[2]
            snapshot = self.probe.read(key)
            self._last = (now, key, snapshot)
            return snapshot

    def close(self) -> None:
        self.probe.close()
