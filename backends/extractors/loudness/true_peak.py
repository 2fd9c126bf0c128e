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

The candidate blocks are filtered in float32 with NumPy, in folded form (see ``folded``: the
filter is symmetric, so half the multiplies); libebur128 accumulates in double and rounds each
output to float32: the two differ by about 1e-6 relative, 1e-5 dB. The sample peak
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
BATCH = 16


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
    history = branches(factor).shape[1] - 1
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
        best = max(best, _interpolated_peak(flat, frames, channels, batch, factor, history))
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


@lru_cache(maxsize=4)
def folded(factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The branches in folded form, ``(middle, even, odd)`` each ``[tap < half]``.

    The window and the sinc are symmetric, so the half-sample branch reads the same backwards
    (``middle``) and the quarter and three-quarter branches are each other's reverse. With
    ``P_t = x[n-t] + x[n-(L-1-t)]`` and ``D_t = x[n-t] - x[n-(L-1-t)]`` the half-sample output
    is ``sum middle·P`` and the other two are ``S ± Q`` with ``S = sum even·P``,
    ``Q = sum odd·D``: the larger of their magnitudes is ``|S| + |Q|``. Half the multiplies.
    At 2× only ``middle`` exists (``even`` and ``odd`` are empty).
    """
    rows = branches(factor)
    taps = rows.shape[1]
    assert taps % 2 == 0, "folding needs an even number of taps per branch"
    half = taps // 2
    if factor == 2:
        mid = rows[0]
        quarter = np.zeros((0, taps))
    else:
        assert factor == 4
        mid, quarter = rows[1], rows[:1]
        assert np.allclose(rows[2], quarter[0, ::-1], rtol=0, atol=1e-12)
    assert np.allclose(mid, mid[::-1], rtol=0, atol=1e-12)
    even = ((quarter + quarter[:, ::-1]) / 2)[:, :half].reshape(-1)
    odd = ((quarter - quarter[:, ::-1]) / 2)[:, :half].reshape(-1)
    return (mid[:half].astype(np.float32), even.astype(np.float32), odd.astype(np.float32))


def _interpolated_peak(flat, frames, channels, blocks, factor, history) -> float:
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
    middle, even, odd = folded(factor)
    span = BLOCK * channels
    base = history * channels
    shape = (len(blocks), span)
    mid_out, sym, anti = (np.zeros(shape, np.float32) for _ in range(3))
    pair_sum, pair_diff, term = (np.empty(shape, np.float32) for _ in range(3))
    for t in range(len(middle)):
        # Output at frame n of the block reads x[n - t] (t frames earlier) and its mirror tap.
        near = segments[:, base - t * channels:base - t * channels + span]
        far_lo = base - (history - t) * channels
        far = segments[:, far_lo:far_lo + span]
        np.add(near, far, out=pair_sum)
        mid_out += np.multiply(pair_sum, middle[t], out=term)
        if len(even):
            sym += np.multiply(pair_sum, even[t], out=term)
            np.subtract(near, far, out=pair_diff)
            anti += np.multiply(pair_diff, odd[t], out=term)
    peaks = [mid_out]
    if len(even):
        np.abs(sym, out=sym)
        np.abs(anti, out=anti)
        peaks.append(np.add(sym, anti, out=sym))
    best = 0.0
    for out in peaks:
        if partial:  # libebur128 has no outputs past the last frame
            out[partial[0], partial[1] * channels:] = 0.0
        best = max(best, float(out.max()), -float(out.min()))
    return best
