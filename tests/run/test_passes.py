"""Engine.passes: GPU modules that do not fit the profile's VRAM budget together get later sweeps."""
from __future__ import annotations

import pytest

from backends.spec import BackendSpec
from tui.run.engine import Engine, RunOptions
from tui.run.profiles import Profile


def spec(name: str, vram_gb: float = 0.0) -> BackendSpec:
    return BackendSpec(name=name, version="1", description=name, keys=(f"{name}_key",),
                       device="gpu" if vram_gb else "cpu", vram_gb=vram_gb)


def engine(tmp_path, *, device: str, budget: float, specs: list[BackendSpec]) -> Engine:
    profile = Profile(name="test", path=tmp_path / "test.toml", device=device, vram_budget_gb=budget)
    return Engine(tmp_path, profile, RunOptions(log_dir=tmp_path / "log"), specs={s.name: s for s in specs})


@pytest.mark.parametrize("device, budget, vram, expected", [
    # Everything fits: one sweep in the run's own order.
    ("gpu", 16, {"a": 8, "b": 6}, [["cpu", "a", "b"]]),
    # No budget set: no limit.
    ("gpu", 0, {"a": 12, "b": 12}, [["cpu", "a", "b"]]),
    # A CPU profile runs GPU modules on the CPU: VRAM does not count.
    ("cpu", 4, {"a": 12, "b": 12}, [["cpu", "a", "b"]]),
    # The third does not fit beside the first two: a later sweep of its own.
    ("gpu", 16, {"a": 8, "b": 6, "c": 10}, [["cpu", "a", "b"], ["c"]]),
    # One model bigger than the budget still runs, alone beside the CPU modules.
    ("gpu", 4, {"a": 8}, [["cpu", "a"]]),
    # Later modules fill the gaps first-fit: c beside a, d beside b.
    ("gpu", 10, {"a": 6, "b": 6, "c": 4, "d": 4}, [["cpu", "a", "c"], ["b", "d"]]),
])
def test_gpu_modules_are_split_into_sweeps_that_fit_the_budget(tmp_path, device, budget, vram, expected):
    specs = [spec("cpu")] + [spec(name, gb) for name, gb in vram.items()]
    sweeps = engine(tmp_path, device=device, budget=budget, specs=specs).passes([s.name for s in specs])
    assert sweeps == expected


def test_every_module_runs_in_exactly_one_sweep(tmp_path):
    vram = {f"g{i}": float(gb) for i, gb in enumerate([5, 9, 3, 7, 2, 8, 4])}
    specs = [spec("cpu"), spec("cpu2")] + [spec(name, gb) for name, gb in vram.items()]
    sweeps = engine(tmp_path, device="gpu", budget=10, specs=specs).passes([s.name for s in specs])
    flat = [m for sweep in sweeps for m in sweep]
    assert sorted(flat) == sorted(s.name for s in specs) and len(flat) == len(set(flat))
    for sweep in sweeps:
        used = sum(vram.get(m, 0) for m in sweep)
        assert used <= 10 or len([m for m in sweep if m in vram]) == 1
