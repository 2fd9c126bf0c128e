"""A small dataset with real .INFO files for the export and report tests: the demo's synthesised
tracks (known tempo and key) plus a clipped one, run through the real engine with the cheap
modules and essentia_tf on its stand-in graphs (known labels), then one track whose .INFO is
broken on purpose."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from tests.support.essentia_standins import write_standins
from tests.support.helpers import run_engine, write_track
from tui import demo

MODULES = ["audio_info", "loudness", "rhythm", "chroma", "essentia_tf"]
CLIPPED = "Hot Master - Square Clip"
BROKEN = "Broken - Bad Info"


def build(root: Path) -> Path:
    """``root/dataset`` with every track analysed; returns the dataset folder."""
    dataset = root / "dataset"
    demo.create(dataset)
    t = np.arange(10 * demo.RATE) / demo.RATE
    square = np.clip(3.0 * np.sin(2 * np.pi * 220 * t), -1.0, 1.0)
    write_track(dataset, CLIPPED, np.stack([square, square], axis=1).astype(np.float32), subtype="PCM_16")
    weights = root / "weights"
    write_standins(weights)
    old = os.environ.get("MIRDECK_MODELS_DIR")
    os.environ["MIRDECK_MODELS_DIR"] = str(weights)
    try:
        run_engine(dataset, only=MODULES, jobs=2, log_dir=root / "runlog")
    finally:
        if old is None:
            os.environ.pop("MIRDECK_MODELS_DIR", None)
        else:
            os.environ["MIRDECK_MODELS_DIR"] = old
    broken = dataset / BROKEN
    shutil.copytree(dataset / "Tiny - Blip", broken)
    (broken / "Tiny - Blip.INFO").unlink()
    (broken / f"{BROKEN}.INFO").write_text('{"bpm": 120, ', encoding="utf-8")
    return dataset
