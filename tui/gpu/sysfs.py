"""AMD GPUs through sysfs (``/sys/class/drm/card*/device``): no library, works as any user.

Files read (all optional except ``mem_info_vram_total``, which marks an amdgpu device):
``mem_info_vram_used|total``, ``mem_info_gtt_used|total`` (bytes), ``gpu_busy_percent``,
``hwmon/hwmon*/temp1_input`` (millidegrees C, the edge sensor), ``product_name``, ``uevent``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable

from tui.gpu import fdinfo
from tui.gpu.model import DeviceReading, GpuSnapshot, ProbeUnavailable

# PCI device ids of recent Radeon cards, for a readable name where sysfs has no product_name.
KNOWN_AMD = {"0x7550": "Radeon RX 9070 series", "0x7590": "Radeon RX 9060 series",
             "0x744c": "Radeon RX 7900 series", "0x7480": "Radeon RX 7600 series",
             "0x73bf": "Radeon RX 6800/6900 series", "0x73df": "Radeon RX 6700 series",
             "0x15bf": "Radeon 780M (APU)", "0x1681": "Radeon 680M (APU)"}


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _bus_id(device: Path) -> str:
    for line in (_read(device / "uevent") or "").splitlines():
        if line.startswith("PCI_SLOT_NAME="):
            return line.split("=", 1)[1]
    return os.path.basename(os.path.realpath(device))


def _temperature(device: Path) -> float | None:
    hwmon = device / "hwmon"
    try:
        names = sorted(os.listdir(hwmon))
    except OSError:
        return None
    for name in names:
        milli = _read_int(hwmon / name / "temp1_input")
        if milli is not None:
            return milli / 1000.0
    return None


def _name(device: Path) -> str:
    product = _read(device / "product_name")
    if product:
        return product
    dev_id = (_read(device / "device") or "").lower()
    return KNOWN_AMD.get(dev_id, f"AMD GPU {dev_id or '?'}")


def read_devices(drm_root: str | os.PathLike = "/sys/class/drm") -> list[DeviceReading]:
    """Every amdgpu card under ``drm_root``, in card order."""
    root = Path(drm_root)
    try:
        cards = sorted((n for n in os.listdir(root) if re.fullmatch(r"card\d+", n)), key=lambda n: int(n[4:]))
    except OSError:
        return []
    devices = []
    for card in cards:
        device = root / card / "device"
        vram_total = _read_int(device / "mem_info_vram_total")
        if vram_total is None:
            continue  # not an amdgpu device (an Intel iGPU, a virtual display...)
        busy = _read_int(device / "gpu_busy_percent")
        devices.append(DeviceReading(
            index=len(devices), name=_name(device), vram_used=_read_int(device / "mem_info_vram_used"),
            vram_total=vram_total, gtt_used=_read_int(device / "mem_info_gtt_used"),
            gtt_total=_read_int(device / "mem_info_gtt_total"),
            busy_percent=float(busy) if busy is not None else None,
            temperature_c=_temperature(device), bus_id=_bus_id(device)))
    return devices


class SysfsProbe:
    source = "sysfs"

    def __init__(self, drm_root: str | os.PathLike = "/sys/class/drm", proc_root: str | os.PathLike = "/proc"):
        self.drm_root, self.proc_root = drm_root, proc_root
        if not read_devices(drm_root):
            raise ProbeUnavailable(f"no amdgpu device under {drm_root}")

    def read(self, pids: Iterable[int] = ()) -> GpuSnapshot:
        devices = tuple(read_devices(self.drm_root))
        processes = fdinfo.process_memory(pids, proc_root=self.proc_root,
                                          bus_to_index={d.bus_id: d.index for d in devices})
        return GpuSnapshot(source=self.source, devices=devices, processes=processes)

    def close(self) -> None:
        pass
