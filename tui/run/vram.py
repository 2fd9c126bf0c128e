"""The VRAM budget a run can count on: the profile's, unless the GPU has less free when the run starts.

A profile's ``vram_budget_gb`` is written for the card (14.5 of the reference card's 16 GB); a
desktop, a browser or a second job may hold part of it. At the start of a run (before any worker
holds memory) the GPU probe's reading of the profile's device lowers the budget to what is free,
less a margin, and says so. Not where the card is smaller than the budget: that is a unified-memory
device (an APU, whose models live in system memory mapped for the GPU), where VRAM says little.
"""
from __future__ import annotations

from collections.abc import Mapping

from tui.gpu.model import GpuSnapshot

GIB = 2 ** 30
MARGIN_GB = 0.5  # allocator slack and the HIP/CUDA context of each worker beyond the specs' figures
VISIBLE = ("HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES")


def device_index(env: Mapping[str, str]) -> int:
    """The device a profile's workers see first (its visible-devices variable), else 0.

    As the probe numbers them (NVML's, or the amdgpu cards in order): the same as CUDA's and HIP's
    on a machine with one GPU or with the default device order, not with CUDA_DEVICE_ORDER=
    FASTEST_FIRST on mixed cards (then the budget may be checked against another card)."""
    for name in VISIBLE:
        first = env.get(name, "").split(",")[0].strip()
        if first.isdigit():
            return int(first)
    return 0


def effective_budget(budget_gb: float, snapshot: GpuSnapshot, index: int = 0) -> tuple[float, str | None]:
    """The budget to plan with, and the warning to show when it is lower than the profile's."""
    if budget_gb <= 0:
        return budget_gb, None
    device = next((d for d in snapshot.devices if d.index == index), None)
    if device is None or device.vram_total is None or device.vram_used is None:
        return budget_gb, None
    total, used = device.vram_total / GIB, device.vram_used / GIB
    if total < budget_gb:
        return budget_gb, None  # unified memory: the budget counts more than the VRAM carve-out
    free = total - used
    if free - MARGIN_GB >= budget_gb:
        return budget_gb, None
    lowered = round(max(0.1, free - MARGIN_GB), 2)  # never 0: a budget of 0 means none at all
    return lowered, (f"GPU {index} ({device.name}) has {free:.1f} of {total:.1f} GiB free ({used:.1f} held by "
                     f"other processes): this run plans with a VRAM budget of {lowered:.1f} GB instead of the "
                     f"profile's {budget_gb:g} (GPU modules that do not fit together run one after another, "
                     "with fewer tracks per call); free the memory or lower vram_budget_gb to silence this")
