"""``timbral_util.filter_third_octaves_downsample`` for every 4096-sample window of a track at once.

``specific_loudness`` runs on each 93 ms window of the track (hardness, booming, sharpness and
warmth ask for it; ``speedups`` shares the results within a track) and starts with this filter
bank: three direct 1/3-octave Butterworth filters, then eight times an anti-aliasing filter, a
decimation by two and three more band filters, about 35 ``lfilter`` calls per window and 159,300
on a 7.7-minute track, each on a few thousand samples, so the calls' own cost was most of it.
Here each of those filters runs once over all the windows, a window per row: ``lfilter`` filters
each row along the last axis with the same recurrence from the same zero state, and the level of
a band is computed from the row with the package's operations (the pairwise ``np.sum`` of a
contiguous row is the 1-D one), so every window gets the package's numbers. The tail that turns
the 28 levels into a total runs per window on its own row, as the package runs it.
"""
from __future__ import annotations

import numpy as np


def _band_levels(y: np.ndarray, m: int) -> list:
    """The package's ``20 * log10(sqrt(sum(y ** 2) / m))`` (or -inf when ``max(y) <= 0``) of
    each row of ``y``."""
    peaks = y.max(axis=1)
    sums = np.sum(y ** 2.0, axis=1)
    return [20 * np.log10(np.sqrt(s / m)) if p > 0 else -1.0 * np.inf
            for p, s in zip(peaks, sums)]


def batch(util, rows: np.ndarray, Pref, fs, Fmin, Fmax, N):  # noqa: N803 - the package's names
    """``[filter_third_octaves_downsample(row, Pref, fs, Fmin, Fmax, N) for row in rows]``, or
    ``None`` where these arguments could take the package's exception branch (a band missing
    below the Nyquist frequency), which is left to the package."""
    signal = util.scipy.signal
    ff, F, j = util.midbands(Fmin, Fmax, fs)
    k = np.where(j == 7)[0][0]
    if rows.ndim != 2 or rows.dtype != np.float64 or k + 3 > len(j) - 1 or k < 2:
        return None
    x = np.ascontiguousarray(rows)
    if x.shape[1] >> ((k - 2) // 3 + 2) == 0:  # the last decimation must leave samples
        return None
    P = np.zeros((len(x), len(j)))
    m = x.shape[1]
    designs = {}
    for i in range(len(j) - 1, k, -1):
        B, A = util.filter_design2(ff[i], fs, N)
        designs[i - k] = (B, A)
        P[:, i] = _band_levels(signal.lfilter(B, A, x), m)
    (Bu, Au), (Bc, Ac), (Bl, Al) = designs[3], designs[2], designs[1]
    for i in range(k, 1, -3):
        C, D = signal.cheby1(2, 0.1, 0.4)
        x = signal.lfilter(C, D, x)
        x = np.ascontiguousarray(x[:, 1::2])  # the package's x[np.arange(1, len(x), 2)]
        fs = fs / 2.0
        m = x.shape[1]
        P[:, i] = _band_levels(signal.lfilter(Bu, Au, x), m)
        P[:, i - 1] = _band_levels(signal.lfilter(Bc, Ac, x), m)
        P[:, i - 2] = _band_levels(signal.lfilter(Bl, Al, x), m)
    out = []
    for levels in P:
        levels = levels + Pref  # each window's own 1-D row, as the package's P
        Plog = 10 ** (levels / 10.0)
        Ptotal = np.sum(Plog)
        Ptotal = 10 * np.log10(Ptotal) if Ptotal > 0 else -1.0 * np.inf
        out.append((Ptotal, levels, F))
    return out
