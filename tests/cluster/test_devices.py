"""Which GPUs a cluster worker may see, and how much of a GPU a module asks Ray for (no Ray needed)."""
from __future__ import annotations

from tui.cluster.devices import gpu_fraction, visible_devices_env


def test_an_amd_worker_gets_its_physical_gpus_in_rocr_and_hip_counts_from_zero_inside_them():
    assert visible_devices_env(["3"], "rocm") == {"ROCR_VISIBLE_DEVICES": "3", "HIP_VISIBLE_DEVICES": "0",
                                                  "CUDA_VISIBLE_DEVICES": "0"}
    assert visible_devices_env(["1", "2"], "rocm")["HIP_VISIBLE_DEVICES"] == "0,1"


def test_an_nvidia_worker_gets_its_physical_gpus_and_a_cpu_actor_keeps_its_profile():
    assert visible_devices_env(["1", "2"], "cuda") == {"CUDA_VISIBLE_DEVICES": "1,2"}
    assert visible_devices_env([], "rocm") == {}


def test_modules_share_a_gpu_by_their_vram_when_the_gpu_memory_is_known():
    assert gpu_fraction(6, 24) == 0.25
    assert gpu_fraction(30, 24) == 1.0  # never more than one GPU
    assert gpu_fraction(6, None) == 1.0  # unknown GPU memory: a whole GPU, never an overcommit
    assert gpu_fraction(0, 24) == 0.0  # a CPU module holds no GPU
