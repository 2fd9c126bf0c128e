"""What a GPU probe reports: plain frozen records the screen only renders.

Memory is in bytes, utilisation in percent (0–100), temperature in °C. ``None`` means the
source cannot tell (never 0 as a stand-in).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeviceReading:
    index: int
    name: str
    vram_used: int | None = None
    vram_total: int | None = None
    gtt_used: int | None = None
    """Graphics translation table (system memory mapped for the GPU; where APU models live)."""
    gtt_total: int | None = None
    busy_percent: float | None = None
    temperature_c: float | None = None
    bus_id: str = ""
    """PCI address (``0000:03:00.0``): how per-process fdinfo entries are matched to devices."""


@dataclass(frozen=True)
class ProcessMemory:
    """GPU memory held by one process, summed over its DRM clients (each counted once)."""

    pid: int
    vram: int = 0
    gtt: int = 0
    devices: tuple[int, ...] = ()


@dataclass(frozen=True)
class GpuSnapshot:
    source: str
    """``nvml``, ``amdsmi``, ``sysfs`` or ``none``."""
    devices: tuple[DeviceReading, ...] = ()
    processes: dict[int, ProcessMemory] = field(default_factory=dict)
    note: str = ""
    """Why there is nothing to show, or what the source cannot report."""
    taken_at: float = field(default_factory=time.monotonic)


class ProbeUnavailable(RuntimeError):
    """This source cannot be used on this machine (no driver, no library, no device)."""
