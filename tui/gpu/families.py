"""GPU memory per worker, counting the processes a worker starts.

flamingo_gguf's model lives in its child llama-server (or llama-mtmd-cli), not in the Python
worker, so a reading keyed by the worker's own pid misses the biggest GPU user of a run. Each
worker's descendants are read too, and their memory is credited to the worker.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from tui.gpu.model import GpuSnapshot, ProcessMemory


def process_families(roots: Iterable[int]) -> dict[int, list[int]]:
    """Each root pid with its live descendants (the root first); a root that is gone maps to itself."""
    import psutil

    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):  # one pass over /proc for every root
        children.setdefault(proc.info["ppid"] or 0, []).append(proc.pid)
    families: dict[int, list[int]] = {}
    for root in roots:
        members, frontier = [root], [root]
        while frontier:
            found = children.get(frontier.pop(), [])
            members += found
            frontier += found
        families[root] = members
    return families


def credit_to_roots(snapshot: GpuSnapshot, families: dict[int, list[int]]) -> GpuSnapshot:
    """The snapshot with each family's memory summed under its root pid (other pids kept as read)."""
    owner = {pid: root for root, members in families.items() for pid in members}
    processes: dict[int, ProcessMemory] = {}
    for pid, memory in snapshot.processes.items():
        root = owner.get(pid, pid)
        held = processes.get(root)
        if held is None:
            processes[root] = replace(memory, pid=root)
        else:
            devices = tuple(sorted(set(held.devices) | set(memory.devices)))
            processes[root] = replace(held, vram=held.vram + memory.vram, gtt=held.gtt + memory.gtt,
                                      devices=devices)
    return replace(snapshot, processes=processes)
