"""Shared pieces of the dashboard tests: datasets, waiting on the app, process checks."""
from __future__ import annotations

import asyncio
import functools
import io
import time
from pathlib import Path

import numpy as np
import soundfile

DASH_BACKENDS = ",".join(f"tests.support.dashboard_backends.{name}"
                         for name in ("dash_slow", "dash_crash", "dash_fast"))


def plain(widget, width: int = 200) -> str:
    """The text a Static shows (its Rich renderable printed without styles)."""
    from rich.console import Console

    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(widget.content)
    return console.export_text()


def sync(test):
    """Run an async test in a fresh event loop (no pytest-asyncio needed)."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))
    return wrapper


def tiny_dataset(root: Path, names: list[str], seconds: float = 0.5) -> Path:
    """Track folders with a short stereo tone each (real FLAC files)."""
    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * 8000)) / 8000
    data = np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2, axis=1).astype(np.float32)
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
        soundfile.write(root / name / "full_mix.flac", data, 8000)
    return root


async def wait_for(pilot, predicate, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.05)


def alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def engine_for(dataset: Path, tmp_path: Path, **options):
    from tui.run.engine import Engine, RunOptions
    from tui.run.profiles import load

    options.setdefault("jobs", 2)
    return Engine(dataset, load("cpu"), RunOptions(log_dir=tmp_path / "runlog", **options))
