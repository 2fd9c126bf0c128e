"""Shared test helpers: run the real engine on a folder, write synthetic audio."""
from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import soundfile

from tui.run.engine import Engine, RunOptions
from tui.run.profiles import load
from tui.run.store import read_info


def run_engine(dataset: Path, *, only=None, skip=(), overwrite=(), jobs: int = 2, profile: str = "cpu",
               module_options=None, on_event=None, log_dir: Path | None = None):
    """Run the real engine on ``dataset``; return (events, stats)."""
    engine = Engine(dataset, load(profile), RunOptions(
        only=list(only or []), skip=list(skip), overwrite=list(overwrite), jobs=jobs,
        log_dir=log_dir or dataset.parent / f".{dataset.name}-runlog",
        module_options=module_options or {}))
    seen = []
    engine.subscribe(seen.append)
    if on_event:
        engine.subscribe(lambda e: on_event(engine, e))
    stats = asyncio.run(engine.run())
    return seen, stats


def info_of(folder: Path) -> dict:
    return read_info(folder / f"{folder.name}.INFO")


def write_track(root: Path, name: str, data: np.ndarray, rate: int = 44100, fmt: str = "flac",
                stems: dict[str, np.ndarray] | None = None, subtype: str | None = None) -> Path:
    """A track folder with ``full_mix.<fmt>`` (and stems); ``data`` is [frames] or [frames, ch]."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    soundfile.write(folder / f"full_mix.{fmt}", data, rate, subtype=subtype)
    for stem, signal in (stems or {}).items():
        soundfile.write(folder / f"{stem}.{fmt}", signal, rate, subtype=subtype)
    return folder


def sine(freq: float, seconds: float, rate: int = 44100, amplitude: float = 0.5, channels: int = 2) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(mono[:, None], channels, axis=1) if channels > 1 else mono


def events_named(events, name: str):
    return [e for e in events if e.name == name]
