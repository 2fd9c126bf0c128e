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


def pad(seconds: float, seed: int = 0) -> np.ndarray:
    """A slowly swelling four-note chord over a faint noise floor: sound, but no attack anywhere."""
    t = np.arange(int(seconds * RATE)) / RATE
    chord = sum(np.sin(2 * np.pi * f * t + i) for i, f in enumerate((220.0, 277.2, 329.6, 440.0)))
    swell = 0.5 + 0.5 * np.sin(2 * np.pi * t / 11.0)
    floor = 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    return (0.15 * chord * swell / 4 + floor).astype(np.float32)


def ambient_intro_groove_outro(bpm: float, intro_s: float, groove_s: float, outro_s: float) -> np.ndarray:
    """An attack-free pad, then drums at ``bpm`` over the pad, then the pad fading out (mono)."""
    from tui import demo

    drums = demo.drums(bpm, groove_s, np.random.default_rng(4))
    drums = drums if drums.ndim == 1 else drums[:, 0]
    groove = 0.6 * drums / np.max(np.abs(drums)) + pad(groove_s, 1)[:len(drums)]
    outro = pad(outro_s, 2) * np.linspace(1.0, 0.0, int(outro_s * RATE), dtype=np.float32)
    return np.concatenate([pad(intro_s), groove, outro]).astype(np.float32)


def humanised_beats(bpm: float, seconds: float, spread_s: float, seed: int) -> np.ndarray:
    """Beat times played by hand: each beat off the clock by a normal error of ``spread_s``."""
    times = beat_times(bpm, seconds)
    return times + np.random.default_rng(seed).normal(0.0, spread_s, len(times))
