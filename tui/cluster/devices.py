"""Which GPUs a worker on a cluster node may see, from the GPU ids Ray assigned to its actor.

Ray narrows ``CUDA_VISIBLE_DEVICES`` for an actor, but has been reported not to narrow the ROCm
variables: an AMD worker would then see every GPU of its node and load its model beside another
actor's. ROCm's runtime applies ``ROCR_VISIBLE_DEVICES`` first and HIP (and ``CUDA_VISIBLE_DEVICES``,
which HIP also reads) indexes *within* what ROCr left visible, so on ROCm the physical ids go into
``ROCR_VISIBLE_DEVICES`` and HIP's variables count from 0.
"""
from __future__ import annotations

GPU_VARIABLES = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES")


def visible_devices_env(gpu_ids: list[str], device: str) -> dict[str, str]:
    """The variables that limit a worker to ``gpu_ids`` (none when the actor holds no GPU: a CPU
    module keeps what its profile says)."""
    if not gpu_ids:
        return {}
    physical = ",".join(str(i) for i in gpu_ids)
    if device == "rocm":
        relative = ",".join(str(i) for i in range(len(gpu_ids)))
        return {"ROCR_VISIBLE_DEVICES": physical, "HIP_VISIBLE_DEVICES": relative, "CUDA_VISIBLE_DEVICES": relative}
    return {"CUDA_VISIBLE_DEVICES": physical}


def gpu_fraction(vram_gb: float, node_gpu_memory_gb: float | None) -> float:
    """The share of one GPU a module's actor asks Ray for: its VRAM against the GPU's memory, so
    several small models share a GPU; a whole GPU when the node's GPU memory is not known."""
    if vram_gb <= 0:
        return 0.0
    if not node_gpu_memory_gb or node_gpu_memory_gb <= 0:
        return 1.0
    return min(1.0, round(vram_gb / node_gpu_memory_gb, 4))
