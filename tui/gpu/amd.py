"""AMD GPUs through ``amdsmi`` (ships with ROCm) for device totals; per-process memory still
comes from fdinfo, which needs no privileges for our own workers."""
from __future__ import annotations

from typing import Iterable

from tui.gpu import fdinfo
from tui.gpu.model import DeviceReading, GpuSnapshot, ProbeUnavailable

MIB = 1 << 20


class AmdSmiProbe:
    source = "amdsmi"

    def __init__(self, proc_root: str = "/proc"):
        try:
            import amdsmi
        except (ImportError, OSError) as exc:  # OSError: the Python package without libamd_smi.so
            raise ProbeUnavailable(f"amdsmi is not importable ({exc})") from exc
        try:
            amdsmi.amdsmi_init()
            self.handles = amdsmi.amdsmi_get_processor_handles()
        except Exception as exc:  # amdsmi raises its own AmdSmiException tree
            raise ProbeUnavailable(f"amdsmi cannot start: {exc}") from exc
        if not self.handles:
            amdsmi.amdsmi_shut_down()
            raise ProbeUnavailable("amdsmi sees no AMD GPU")
        self.smi, self.proc_root = amdsmi, proc_root

    def _optional(self, call, *args):
        try:
            return call(*args)
        except Exception:
            return None

    def read(self, pids: Iterable[int] = ()) -> GpuSnapshot:
        smi = self.smi
        devices = []
        for index, handle in enumerate(self.handles):
            vram = self._optional(smi.amdsmi_get_gpu_vram_usage, handle) or {}
            activity = self._optional(smi.amdsmi_get_gpu_activity, handle) or {}
            temp = self._optional(smi.amdsmi_get_temp_metric, handle, smi.AmdSmiTemperatureType.EDGE,
                                  smi.AmdSmiTemperatureMetric.CURRENT)
            asic = self._optional(smi.amdsmi_get_gpu_asic_info, handle) or {}
            bus = self._optional(smi.amdsmi_get_gpu_device_bdf, handle) or ""
            busy = activity.get("gfx_activity")
            devices.append(DeviceReading(
                index=index, name=asic.get("market_name") or f"AMD GPU {index}",
                vram_used=vram["vram_used"] * MIB if "vram_used" in vram else None,
                vram_total=vram["vram_total"] * MIB if "vram_total" in vram else None,
                busy_percent=float(busy) if isinstance(busy, (int, float)) else None,
                temperature_c=float(temp) if isinstance(temp, (int, float)) else None, bus_id=bus))
        processes = fdinfo.process_memory(pids, proc_root=self.proc_root,
                                          bus_to_index={d.bus_id: d.index for d in devices if d.bus_id})
        return GpuSnapshot(source=self.source, devices=tuple(devices), processes=processes,
                           note="GTT from sysfs only")

    def close(self) -> None:
        try:
            self.smi.amdsmi_shut_down()
        except Exception:
            pass
