"""``timbral_util.calculate_rms_enveope`` with its per-window loop as NumPy operations on blocks
of windows: the same numbers.

The package steps through the signal in Python, one ``np.sqrt(np.mean(w * w))`` per window
(hardness's energy ratio on both separated signals, 1024-sample windows every 512; depth's
envelope): tens of thousands of small NumPy calls per track. A block of windows as rows of a
2-D array gets the same products; ``np.mean`` over a contiguous row is the 1-D mean's pairwise
sum divided by the same count, and the square root is correctly rounded either way. The final,
shorter window and the normalisation are the package's own expressions.
"""
from __future__ import annotations

import builtins

import numpy as np

WINDOWS_PER_BLOCK = 2048  # 1024-sample windows: 16 MB of products per block


def rms_envelope(util):
    """A drop-in for ``util.calculate_rms_enveope``; anything but 1-D float64 goes to it."""
    original = util.calculate_rms_enveope

    def calculate_rms_enveope(audio_samples, step_size=256, overlap_step=256, normalise=True):
        x = audio_samples
        if (not isinstance(x, np.ndarray) or x.ndim != 1 or x.dtype != np.float64
                or not isinstance(step_size, int) or not isinstance(overlap_step, int)
                or step_size < 1 or overlap_step < 1):
            return original(audio_samples, step_size, overlap_step, normalise)
        n = len(x)
        count = (n - step_size - 1) // overlap_step + 1 if n > step_size else 0
        parts = []
        if count:
            windows = np.lib.stride_tricks.sliding_window_view(x, step_size)[::overlap_step]
            for first in range(0, count, WINDOWS_PER_BLOCK):
                block = windows[first:min(count, first + WINDOWS_PER_BLOCK)]
                parts.append(np.sqrt(np.mean(block * block, axis=1)))
        last = x[count * overlap_step:]
        parts.append(np.array([np.sqrt(np.mean(last * last))]))
        envelope = np.concatenate(parts)
        if normalise:
            largest = getattr(util, "max", builtins.max)  # the package module's max, as it calls it
            envelope = envelope * (1.0 / largest(abs(envelope)))
        return envelope

    calculate_rms_enveope.__wrapped__ = original
    return calculate_rms_enveope
