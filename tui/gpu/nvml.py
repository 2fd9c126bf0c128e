"""NVIDIA GPUs through NVML (the ``nvidia-ml-py`` package, imported as ``pynvml``)."""
from __future__ import annotations

from typing import Iterable

from tui.gpu.model import DeviceReading, GpuSnapshot, ProbeUnavailable, ProcessMemory


class NvmlProbe:
    source = "nvml"

    def __init__(self):
        try:
            import pynvml
        except ImportError as exc:
            raise ProbeUnavailable("nvidia-ml-py is not installed") from exc
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise ProbeUnavailable(f"NVML cannot start: {exc}") from exc
        self.nv = pynvml
        try:
            count = pynvml.nvmlDeviceGetCount()
        except pynvml.NVMLError as exc:
            pynvml.nvmlShutdown()
            raise ProbeUnavailable(f"NVML cannot count devices: {exc}") from exc
        if count == 0:
            pynvml.nvmlShutdown()
            raise ProbeUnavailable("NVML sees no NVIDIA device")
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]

    def _optional(self, call, *args):
        """One NVML query; None where the device does not support it (not a made-up 0)."""
        try:
            return call(*args)
        except self.nv.NVMLError:
            return None

    def read(self, pids: Iterable[int] = ()) -> GpuSnapshot:
        nv = self.nv
        wanted = set(pids)
        devices, processes = [], {}
        for index, handle in enumerate(self.handles):
            name = self._optional(nv.nvmlDeviceGetName, handle) or f"NVIDIA GPU {index}"
            if isinstance(name, bytes):
                name = name.decode()
            memory = self._optional(nv.nvmlDeviceGetMemoryInfo, handle)
            util = self._optional(nv.nvmlDeviceGetUtilizationRates, handle)
            temp = self._optional(nv.nvmlDeviceGetTemperature, handle, nv.NVML_TEMPERATURE_GPU)
            pci = self._optional(nv.nvmlDeviceGetPciInfo, handle)
            bus = getattr(pci, "busId", "") if pci is not None else ""
            devices.append(DeviceReading(
                index=index, name=name, vram_used=memory.used if memory else None,
                vram_total=memory.total if memory else None,
                busy_percent=float(util.gpu) if util is not None else None,
                temperature_c=float(temp) if temp is not None else None,
                bus_id=bus.decode() if isinstance(bus, bytes) else bus))
            for query in (nv.nvmlDeviceGetComputeRunningProcesses, nv.nvmlDeviceGetGraphicsRunningProcesses):
                for proc in self._optional(query, handle) or []:
                    if proc.pid not in wanted or proc.usedGpuMemory is None:
                        continue  # None: the driver hides per-process memory (containers, WSL)
                    old = processes.get(proc.pid)
                    vram = (old.vram if old else 0) + proc.usedGpuMemory
                    devs = tuple(sorted(set(old.devices if old else ()) | {index}))
                    processes[proc.pid] = ProcessMemory(pid=proc.pid, vram=vram, devices=devs)
        return GpuSnapshot(source=self.source, devices=tuple(devices), processes=processes)

    def close(self) -> None:
        try:
            self.nv.nvmlShutdown()
        except self.nv.NVMLError:
            pass
