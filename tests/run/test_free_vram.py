"""The VRAM budget a run plans with: the profile's, lowered to what the GPU has free at the start."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.helpers import info_of, sine, write_track
from tui.gpu import NullProbe
from tui.gpu.model import DeviceReading, GpuSnapshot
from tui.gpu.sysfs import SysfsProbe
from tui.run.engine import Engine, RunOptions
from tui.run.profiles import Profile
from tui.run.vram import MARGIN_GB, device_index, effective_budget

FIX = Path(__file__).resolve().parents[1] / "gpu" / "fixtures"
GIB = 2 ** 30


def snapshot(total_gib: float, used_gib: float, index: int = 0) -> GpuSnapshot:
    return GpuSnapshot(source="test", devices=(DeviceReading(index=index, name="Card", vram_total=int(total_gib * GIB),
                                                             vram_used=int(used_gib * GIB)),))


def test_the_budget_is_lowered_to_what_is_free_and_only_then():
    assert effective_budget(14.5, snapshot(16, 1.0)) == (14.5, None)  # 15 free: the profile's budget holds
    budget, warning = effective_budget(14.5, snapshot(16, 10.0))
    assert budget == pytest.approx(6 - MARGIN_GB)
    assert "GPU 0 (Card) has 6.0 of 16.0 GiB free (10.0 held by other processes)" in warning
    assert "budget of 5.5 GB instead of the profile's 14.5" in warning
    assert effective_budget(14.5, snapshot(16, 15.99))[0] == 0.1  # never 0, which would mean no budget
    assert effective_budget(8, snapshot(0.5, 0.4)) == (8, None)  # an APU: its models live in GTT
    assert effective_budget(14.5, snapshot(16, 10.0, index=1)) == (14.5, None)  # not the profile's device
    assert effective_budget(0, snapshot(16, 10.0)) == (0, None)  # no budget set: nothing to lower
    assert effective_budget(14.5, GpuSnapshot(source="none")) == (14.5, None)


def test_the_profiles_visible_device_is_the_one_read():
    assert device_index({}) == 0
    assert device_index({"HIP_VISIBLE_DEVICES": "1,0"}) == 1
    assert device_index({"CUDA_VISIBLE_DEVICES": "GPU-uuid"}) == 0


def run(tmp_path, probe) -> tuple[list, Path]:
    root = tmp_path / "ds"
    for i in range(4):
        write_track(root, f"t{i}", sine(220.0, 1.0, rate=8000), rate=8000)
    profile = Profile(name="test-rocm", path=tmp_path / "p.toml", device="rocm", vram_budget_gb=14.5)
    engine = Engine(root, profile, RunOptions(only=["batchy"], log_dir=tmp_path / "log"))
    engine.gpu_probe = probe
    seen: list = []
    engine.subscribe(seen.append)
    asyncio.run(engine.run())
    return seen, root


def test_a_gpu_others_hold_makes_the_run_put_fewer_tracks_in_each_call_and_say_why(tmp_path, monkeypatch):
    monkeypatch.setenv("MIRDECK_EXTRA_BACKENDS", "tests.support.fake_backends.batchy")
    monkeypatch.setenv("MIRDECK_PCM_DIR", str(tmp_path / "shm"))
    # The reference card with 13.9 of its 15.9 GiB held: batchy needs 1 GB plus 1 GB per extra track.
    seen, root = run(tmp_path / "busy", lambda: SysfsProbe(FIX / "sysfs-rx9070xt-6.14", FIX / "proc-6.10"))
    warnings = [e.message for e in seen if e.name == "warning" and "VRAM budget" in e.message]
    assert len(warnings) == 1 and "has 2.0 of 15.9 GiB free" in warnings[0]
    assert {len(info_of(root / f"t{i}")["_mirdeck"]["batchy"]["call_tracks"]) for i in range(4)} == {1}
    # Without a reading the profile's budget stands: three tracks per call (batchy's own limit).
    seen, root = run(tmp_path / "idle", lambda: NullProbe())
    assert not [e for e in seen if e.name == "warning" and "VRAM budget" in e.message]
    assert max(len(info_of(root / f"t{i}")["_mirdeck"]["batchy"]["call_tracks"]) for i in range(4)) == 3
