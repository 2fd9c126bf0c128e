"""The timbral speed-ups' compiled loops, in one module so that numba can cache them on disk.

Each is a loop of the package's, written out in the same float64 arithmetic (no fast-math, so no
reassociation or fused multiply-add): the numbers are the package's. Compiled with ``cache=True``,
a worker loads them from ``__pycache__`` instead of compiling them (several seconds of every
worker's first track before). Import this module only inside functions: it imports numba.
:func:`warm` compiles each signature once; the backend calls it in ``create()``, before the worker
says hello, so parallel workers read a finished cache instead of writing it together.
"""
from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def envelope_loop(abs_samples, decay, hold_samples):
    """``sample_and_hold_envelope_calculation``'s per-sample recurrence."""
    envelope = np.empty_like(abs_samples)
    previous = 0.0
    hold_counter = 0
    for i in range(abs_samples.shape[0]):
        sample = abs_samples[i]
        if sample >= previous:
            envelope[i] = sample
            previous = sample
            hold_counter = 0
        elif hold_counter < hold_samples:
            hold_counter += 1
            envelope[i] = previous
        else:
            out = previous - decay
            if out > sample:
                envelope[i] = out
                previous = out
            else:
                envelope[i] = sample
                previous = sample
    return envelope


@numba.njit(cache=True, nogil=True)
def _reflect(j, n):
    # scipy.ndimage "reflect": (d c b a | a b c d | d c b a); callers keep |overshoot| <= n.
    if j < 0:
        return -j - 1
    if j >= n:
        return 2 * n - j - 1
    return j


@numba.njit(cache=True, nogil=True)
def median_rows(x, out, half):
    """Running median of 2 * half + 1 values along each row (sliding_median.py)."""
    rows, n = x.shape
    size = 2 * half + 1
    window = np.empty(size, dtype=x.dtype)
    for r in range(rows):
        for i in range(size):
            window[i] = x[r, _reflect(i - half, n)]
        window.sort()
        out[r, 0] = window[half]
        for c in range(1, n):
            old = x[r, _reflect(c - half - 1, n)]
            new = x[r, _reflect(c + half, n)]
            if old == new:
                out[r, c] = window[half]
                continue
            # Remove the value that left (any copy of it: equal values are interchangeable).
            lo, hi = 0, size - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if window[mid] < old:
                    lo = mid + 1
                else:
                    hi = mid
            pos = lo
            # Insert the value that came in, shifting the ones between.
            if new > old:
                while pos + 1 < size and window[pos + 1] < new:
                    window[pos] = window[pos + 1]
                    pos += 1
            else:
                while pos > 0 and window[pos - 1] > new:
                    window[pos] = window[pos - 1]
                    pos -= 1
            window[pos] = new
            out[r, c] = window[half]


@numba.njit(cache=True, nogil=True)
def _slice_min(a, first, last):
    # Python's min over a slice: the first smallest; an empty slice is the package's ValueError.
    best = a[first]
    for i in range(first + 1, last):
        if a[i] < best:
            best = a[i]
    return best


@numba.njit(cache=True, nogil=True)
def peak_candidates(arr, mx, cthr, out):
    """``detect_peaks``' scan of the local maxima ``mx`` (indices into the appended array
    ``arr``) for contrastive notches, as the package's while loop: writes the kept peaks, in the
    package's order, to ``out``; returns how many, or -1 where the package's own code would raise
    (an empty slice), so the caller can let the package raise."""
    count = 0
    j = 0
    mxj = mx[j]
    jj = j + 1
    bufmin = 2.0
    bufmax = arr[mxj]
    if mxj > 1:
        oldbufmin = _slice_min(arr, 0, mxj - 1)
    else:
        oldbufmin = arr[0]
    while jj < len(mx):
        if mx[jj - 1] + 1 == mx[jj] - 1:
            value = arr[mx[jj - 1]]
        else:
            if mx[jj - 1] >= mx[jj] - 1:
                return -1
            value = _slice_min(arr, mx[jj - 1], mx[jj] - 1)
        if value < bufmin:  # min([bufmin, value]) keeps the first of equals
            bufmin = value
        if bufmax - bufmin < cthr:
            if arr[mx[jj]] > bufmax:
                j = jj
                mxj = mx[j]
                bufmax = arr[mxj]
                if bufmin < oldbufmin:
                    oldbufmin = bufmin
                bufmin = 2.0
            elif arr[mx[jj]] - bufmax <= 0:
                if arr[mx[jj]] > bufmax:  # max([bufmax, new]) keeps the first of equals
                    bufmax = arr[mx[jj]]
                if bufmin < oldbufmin:
                    oldbufmin = bufmin
        else:
            if bufmax - oldbufmin < cthr:
                if bufmin < oldbufmin:
                    oldbufmin = bufmin
            else:
                out[count] = mxj
                count += 1
                oldbufmin = bufmin
            bufmax = arr[mx[jj]]
            j = jj
            mxj = mx[j]
            bufmin = 2.0
        jj += 1
    if bufmax - oldbufmin >= cthr and (bufmax - _slice_min(arr, mx[j] + 1, len(arr)) >= cthr):
        out[count] = mx[j]
        count += 1
    return count


def warm() -> None:
    """Compile (or load from the cache) every signature the speed-ups call."""
    x = np.abs(np.sin(np.arange(64, dtype=np.float64)))
    envelope_loop(x, 0.01, 3.0)
    median_rows(np.ascontiguousarray(x.reshape(4, 16)), np.empty((4, 16)), 2)
    block = x.reshape(4, 16)
    median_rows(block.T, np.empty((16, 4)).T, 2)  # the transposed views of the column filter
    arr = np.concatenate(([-2.0], x, [-2.0]))
    mx = np.flatnonzero((arr[1:-1] >= 0.01) & (np.diff(arr)[:-1] > 0) & (np.diff(arr)[1:] <= 0)) + 1
    peak_candidates(arr, mx.astype(np.int64), 0.01, np.empty(len(mx), dtype=np.int64))
