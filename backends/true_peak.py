"""True peak (BS.1770-4 Annex 2) with libebur128's interpolator, oversampling only where it can matter.

libebur128 (1.2.6, the one pyebur128 0.1.1 bundles) finds the true peak with a 49-tap
Hann-windowed sinc interpolator: 4× below 96 kHz, 2× below 192 kHz, none above. Run over the
whole signal it costs as much as everything else the loudness module does. This module computes
the same interpolator's outputs, but only for the blocks that can hold the true peak:

* Each output is ``y_f[n] = sum_t c_f[t] * x[n - t]`` (``f`` the phase, ``t`` 0…11 at 4×), so
  ``|y_f[n]| <= max|x[n-11..n]| * sum_t |c_f[t]|``. The largest branch gain ``G`` is 1.864
  (+5.4 dB) at 4×; phase 0 is the sample itself.
* Blocks are visited loudest first; a block whose sample peak (with the 11 samples before it)
  times ``G`` does not exceed the best true peak found so far cannot raise it and is skipped, as
  is every quieter block after it.

The candidate blocks are filtered in float32 with NumPy (libebur128 accumulates in double and
rounds each output to float32: the two differ by about 1e-6 relative, 1e-5 dB). The sample peak
is part of the answer, as libebur128 reports ``max(true peak, sample peak)``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

TAPS = 49
# Frames per block: small enough that a loud transient does not drag a long quiet stretch into
# the candidates, large enough that NumPy's per-call overhead stays small.
BLOCK = 1024
# Candidate blocks filtered per NumPy batch; the best peak is updated between batches.
BATCH = 32


def oversampling(rate: int) -> int:
    """libebur128's interpolation factor for a sample rate (1: no interpolation)."""
    return 4 if rate < 96000 else 2 if rate < 192000 else 1


@lru_cache(maxsize=4)
def branches(factor: int) -> np.ndarray:
    """Coefficients ``[phase, tap]`` of the interpolator's polyphase branches, phase 0 (the
    sample itself) left out; libebur128's ``interp_create`` formula, zero taps dropped."""
    j = np.arange(TAPS)
    m = j - (TAPS - 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(np.abs(m) > 1e-6, np.sin(m * np.pi / factor) / (m * np.pi / factor), 1.0)
    c = c * 0.5 * (1 - np.cos(2 * np.pi * j / (TAPS - 1)))
    rows = []
    for f in range(1, factor):
        row = c[j % factor == f]
        assert np.all(np.abs(row) > 1e-6), "a branch with zero taps would shift the delay index"
        rows.append(row)
    return np.array(rows)


def branch_gain(factor: int) -> float:
    """The largest sum of |coefficients| of any branch: no output exceeds the input peak × this."""
    return float(np.abs(branches(factor)).sum(axis=1).max()) if factor > 1 else 1.0


def true_peak(data: np.ndarray, rate: int) -> tuple[float, dict[str, int]]:
    """True peak (linear, 1.0 = 0 dBTP) of ``[frames, channels]`` float32 over all channels, as
    libebur128's ``ebur128_true_peak`` reports it; and how many blocks were interpolated."""
    frames, channels = data.shape
    flat = np.ascontiguousarray(data, dtype=np.float32).reshape(-1)
    factor = oversampling(rate)
    blocks = -(-frames // BLOCK)
    peaks = _block_peaks(flat, frames, channels)
    best = float(peaks.max()) if blocks else 0.0
    stats = {"blocks": blocks, "interpolated": 0}
    if factor == 1 or best == 0.0:
        return best, stats
    coeffs = branches(factor).astype(np.float32)
    history = coeffs.shape[1] - 1
    # An output of block k also reads the last samples of block k - 1.
    reach = peaks.copy()
    reach[1:] = np.maximum(peaks[1:], peaks[:-1])
    gain = branch_gain(factor)
    order = np.argsort(-reach, kind="stable")
    for first in range(0, blocks, BATCH):
        batch = [k for k in order[first:first + BATCH] if reach[k] * gain > best]
        if not batch:
            break  # the order is descending: no later block can do better either
        stats["interpolated"] += len(batch)
        best = max(best, _interpolated_peak(flat, frames, channels, batch, coeffs, history))
    return best, stats


def _block_peaks(flat: np.ndarray, frames: int, channels: int) -> np.ndarray:
    """Sample peak of each ``BLOCK``-frame block (max and min separately: no |x| temporary)."""
    whole = frames // BLOCK
    body = flat[:whole * BLOCK * channels].reshape(whole, BLOCK * channels)
    peaks = np.maximum(body.max(axis=1), -body.min(axis=1)).astype(np.float64)
    if whole * BLOCK < frames:
        tail = flat[whole * BLOCK * channels:]
        peaks = np.append(peaks, max(float(tail.max()), -float(tail.min())))
    return peaks


def _interpolated_peak(flat, frames, channels, blocks, coeffs, history) -> float:
    """Largest |output| of the interpolator over the given blocks' frames, every branch and
    channel, with the filter history libebur128 would have there (zeros before the start)."""
    width = (BLOCK + history) * channels
    segments = np.zeros((len(blocks), width), dtype=np.float32)
    partial = None  # (row, frames) of the last block when it is shorter than BLOCK
    for row, k in enumerate(blocks):
        start, stop = k * BLOCK - history, min(frames, (k + 1) * BLOCK)
        src = flat[max(start, 0) * channels:stop * channels]
        offset = (max(start, 0) - start) * channels
        segments[row, offset:offset + len(src)] = src
        if stop - k * BLOCK < BLOCK:
            partial = (row, stop - k * BLOCK)
    out = np.empty((len(blocks), BLOCK * channels), dtype=np.float32)
    term = np.empty_like(out)
    best = 0.0
    span = BLOCK * channels
    for branch in coeffs:
        # Output at frame n of the block: sum_t c[t] * x[n - t]; tap t starts t frames earlier.
        base = history * channels
        np.multiply(segments[:, base:base + span], branch[0], out=out)
        for t in range(1, len(branch)):
            lo = base - t * channels
            np.multiply(segments[:, lo:lo + span], branch[t], out=term)
            out += term
        if partial:  # libebur128 has no outputs past the last frame
            out[partial[0], partial[1] * channels:] = 0.0
        best = max(best, float(out.max()), -float(out.min()))
    return best
