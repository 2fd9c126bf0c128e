"""GPU memory per process from ``/proc/<pid>/fdinfo/*`` (the DRM fdinfo interface).

Kernels changed the keys over time; all of these are read:

* 5.14–5.18 amdgpu: ``pasid``, ``vram mem: N KiB``, ``gtt mem: N KiB``
* 5.19–6.8 (amdgpu): ``drm-client-id``, ``drm-pdev``, ``drm-memory-vram``, ``drm-memory-gtt``
* 6.9+ (common DRM helper): ``drm-total-<region>``, ``drm-resident-<region>`` (amdgpu also keeps
  the older ``drm-memory-*`` aliases); Intel names its regions ``local0`` / ``system0``

Several descriptors (dup'd, or passed to a child) can point at one DRM client: each
``(drm-pdev, drm-client-id)`` is counted once, for the first process seen holding it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tui.gpu.model import ProcessMemory
from tui.gpu.units import parse_size


@dataclass(frozen=True)
class DrmClient:
    """One DRM client as one fdinfo file shows it. Sizes in bytes; None = not reported."""

    pdev: str
    client_id: str
    vram: int | None
    gtt: int | None
    driver: str = ""


def parse_fields(text: str) -> dict[str, str]:
    """``key:<tabs/spaces>value`` lines to a dict (keys may contain spaces: ``vram mem``)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _region_size(fields: dict[str, str], regions: Iterable[str]) -> int | None:
    """Resident memory of the first region present, by the newest key a kernel offers."""
    for region in regions:
        for prefix in ("drm-resident-", "drm-memory-", "drm-total-"):
            value = fields.get(prefix + region)
            if value is not None:
                return parse_size(value)
    return None


def parse_client(text: str) -> DrmClient | None:
    """The DRM client described by one fdinfo file, or None for a descriptor that is not one."""
    fields = parse_fields(text)
    if "drm-client-id" in fields:
        vram_regions = ["vram"] + sorted(k[len("drm-total-"):] for k in fields
                                         if k.startswith("drm-total-local"))
        gtt_regions = ["gtt"]
        return DrmClient(pdev=fields.get("drm-pdev", ""), client_id=fields["drm-client-id"],
                         vram=_region_size(fields, vram_regions), gtt=_region_size(fields, gtt_regions),
                         driver=fields.get("drm-driver", ""))
    if "pasid" in fields and "vram mem" in fields:  # amdgpu before drm-* keys (5.14–5.18)
        return DrmClient(pdev=fields.get("pdev", ""), client_id="pasid:" + fields["pasid"],
                         vram=parse_size(fields["vram mem"]),
                         gtt=parse_size(fields["gtt mem"]) if "gtt mem" in fields else None,
                         driver="amdgpu")
    return None


def _drm_fds(proc_dir: Path) -> list[Path]:
    """fdinfo files of descriptors that point at a DRM device node (all of them if the fd
    links cannot be read, e.g. in a fixture tree or for another user's process)."""
    fdinfo = proc_dir / "fdinfo"
    try:
        names = sorted(os.listdir(fdinfo), key=lambda n: int(n) if n.isdigit() else -1)
    except OSError:
        return []
    fd_dir = proc_dir / "fd"
    if not fd_dir.is_dir():
        return [fdinfo / n for n in names]
    chosen = []
    for name in names:
        try:
            target = os.readlink(fd_dir / name)
        except OSError:
            continue  # closed since the listing, or not ours to read
        if target.startswith("/dev/dri/"):
            chosen.append(fdinfo / name)
    return chosen


def process_memory(pids: Iterable[int], *, proc_root: str | os.PathLike = "/proc",
                   bus_to_index: dict[str, int] | None = None) -> dict[int, ProcessMemory]:
    """GPU memory of each of ``pids`` (processes that hold no DRM client are left out)."""
    seen: set[tuple[str, str]] = set()
    result: dict[int, ProcessMemory] = {}
    for pid in pids:
        vram = gtt = 0
        devices: set[int] = set()
        found = False
        for path in _drm_fds(Path(proc_root) / str(pid)):
            try:
                client = parse_client(path.read_text(encoding="utf-8", errors="replace"))
            except (OSError, ValueError):
                continue  # the descriptor closed while we read, or a format we do not know
            if client is None or (client.pdev, client.client_id) in seen:
                continue
            seen.add((client.pdev, client.client_id))
            found = True
            vram += client.vram or 0
            gtt += client.gtt or 0
            if bus_to_index and client.pdev in bus_to_index:
                devices.add(bus_to_index[client.pdev])
        if found:
            result[pid] = ProcessMemory(pid=pid, vram=vram, gtt=gtt, devices=tuple(sorted(devices)))
    return result
