"""Synthetic rhythm signals with known beat and onset times (for tests and the benchmark)."""
from __future__ import annotations

import numpy as np

RATE = 44100


def click(freq: float = 1500.0, decay_s: float = 0.002, amplitude: float = 1.0) -> np.ndarray:
    """A 10 ms decaying sine burst: a sharp attack at sample 0."""
    t = np.arange(int(0.01 * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t) * np.exp(-t / decay_s)).astype(np.float32)


def place(times, sound: np.ndarray, seconds: float) -> np.ndarray:
    """Mono signal of ``seconds`` with ``sound`` starting at each of ``times``."""
    out = np.zeros(int(seconds * RATE), dtype=np.float32)
    for start in times:
        i = int(round(start * RATE))
        n = min(len(sound), len(out) - i)
        if n > 0:
            out[i:i + n] += sound[:n]
    return out


def beat_times(bpm: float, seconds: float, first: float = 0.5) -> np.ndarray:
    """Beat times in seconds from ``first`` on, every 60/bpm s, ending before ``seconds``."""
    return np.arange(first, seconds - 0.05, 60.0 / bpm)


def click_track(bpm: float, seconds: float, first: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(mono clicks at every beat, the beat times)."""
    times = beat_times(bpm, seconds, first)
    return place(times, click(), seconds), times


def stereo(mono: np.ndarray) -> np.ndarray:
    return np.stack([mono, mono], axis=1)
