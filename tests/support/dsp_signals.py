"""Synthesised signals whose loudness, spectrum, band levels and key are known by construction."""
from __future__ import annotations

import numpy as np

from tui import demo

RATE = 44100

# i - iv - V - i in A harmonic minor (the V chord's G# makes it unambiguous against C major).
A_MINOR_CHORDS = [[57, 60, 64], [50, 53, 57], [52, 56, 59], [57, 60, 64]]
A_MINOR_ROOTS = [45, 38, 40, 45]
# I - IV - V - I in E-flat major.
E_FLAT_MAJOR_CHORDS = [[51, 55, 58], [56, 60, 63], [58, 62, 65], [51, 55, 58]]
E_FLAT_MAJOR_ROOTS = [39, 44, 46, 39]
# Pitch classes outside each scale (C = 0): they must stay weak in the chroma.
OUTSIDE_A_HARMONIC_MINOR = [1, 3, 6, 10]  # C# D# F# A#
OUTSIDE_E_FLAT_MAJOR = [1, 4, 6, 9, 11]  # C# E F# A B


def stereo(mono: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(mono, dtype=np.float32)[:, None], 2, axis=1)


def sine(freq: float, seconds: float, peak_dbfs: float) -> np.ndarray:
    """Stereo sine; a 1 kHz sine with peak −23 dBFS in both channels measures −23 LUFS
    (BS.1770: a 0 dBFS 1 kHz sine in one channel reads −3.01 LKFS)."""
    t = np.arange(int(seconds * RATE)) / RATE
    return stereo(10 ** (peak_dbfs / 20) * np.sin(2 * np.pi * freq * t))


def shaped_noise(seconds: float, *, exponent: float = 0.0, band: tuple[float, float] | None = None,
                 rms_dbfs: float = -20.0, seed: int = 0, channels: int = 2) -> np.ndarray:
    """Gaussian noise with power spectrum ∝ f**-exponent (0 white, 1 pink), optionally zero
    outside ``band`` [low, high) Hz, scaled to an exact RMS (over all channels) in dBFS."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(rng.standard_normal((n, channels)), axis=0)
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    gain = np.zeros_like(freqs)
    gain[1:] = freqs[1:] ** (-exponent / 2)
    if band is not None:
        gain[(freqs < band[0]) | (freqs >= band[1])] = 0.0
    x = np.fft.irfft(spectrum * gain[:, None], n, axis=0)
    x *= 10 ** (rms_dbfs / 20) / np.sqrt(np.mean(np.square(x)))
    return x.astype(np.float32)


def progression(chords, roots, seconds: float, bpm: float = 100.0) -> np.ndarray:
    mono = demo.progression(chords, bpm, seconds) * 0.5 + demo.bassline(roots, bpm, seconds) * 0.6
    return stereo(mono / np.max(np.abs(mono)) * 0.5)


def chord_blocks(chords: list[list[int]], block_samples: int, seconds: float) -> np.ndarray:
    """Sustained chords (sines with 4 partials), each held for ``block_samples`` then the next."""
    n = int(seconds * RATE)
    out = np.zeros(n)
    t = np.arange(block_samples) / RATE
    fade = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)  # no clicks at the chord changes
    for i, start in enumerate(range(0, n, block_samples)):
        notes = chords[i % len(chords)]
        block = sum(np.sin(2 * np.pi * demo.midi_hz(m) * k * t) / k for m in notes for k in range(1, 5))
        end = min(n, start + block_samples)
        out[start:end] = (block * fade)[: end - start]
    return stereo(out / np.max(np.abs(out)) * 0.5)


def level_steps(levels_db: list[float], seconds_each: float, seed: int = 3) -> np.ndarray:
    """Pink noise in sections at the given levels: a signal with a known, large loudness range."""
    parts = [shaped_noise(seconds_each, exponent=1.0, rms_dbfs=level, seed=seed + i)
             for i, level in enumerate(levels_db)]
    return np.concatenate(parts)
