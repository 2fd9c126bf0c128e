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
def _slide(window, old, new, half):
    """Move a sorted window one step (``old`` leaves, ``new`` comes in); its median after."""
    if old == new:
        return window[half]
    size = window.shape[0]
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
    return window[half]


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
            out[r, c] = _slide(window, x[r, _reflect(c - half - 1, n)], x[r, _reflect(c + half, n)], half)


@numba.njit(cache=True, nogil=True)
def soft_split(spectrum, magnitude, harm, perc, tiny, harmonic, percussive):
    """hpss's tail for librosa's defaults (power 2, margin 1, split_zeros), element by element:
    magphase's phase from the magnitude, the two soft masks over their shared scale
    max(harm, perc), and the masked magnitudes times the phase. The same operations in the same
    order as the NumPy expressions of ``speedups._fast_hpss``; the magnitude (a real number) times
    the complex phase is written as NumPy's complex product with a zero imaginary part."""
    rows, cols = spectrum.shape
    for i in range(rows):
        for j in range(cols):
            s = spectrum[i, j]
            m = magnitude[i, j]
            zero_to_one = 1.0 if m == 0 else 0.0
            m_nonzero = m + zero_to_one
            phase_re = s.real / m_nonzero + zero_to_one
            phase_im = s.imag / m_nonzero
            h = harm[i, j]
            p = perc[i, j]
            z = h if h >= p else p
            if z < tiny:
                mask_h = 0.5
                mask_p = 0.5
            else:
                qh = h / z
                qp = p / z
                a = qh * qh  # NumPy's x ** 2.0 is its square, x * x
                b = qp * qp
                total = a + b
                mask_h = a / total
                mask_p = b / total
            r = m * mask_h
            harmonic[i, j] = complex(r * phase_re - 0.0 * phase_im, r * phase_im + 0.0 * phase_re)
            r = m * mask_p
            percussive[i, j] = complex(r * phase_re - 0.0 * phase_im, r * phase_im + 0.0 * phase_re)


@numba.njit(cache=True, nogil=True)
def lfilter_rows(b, a, x, y):
    """scipy.signal.lfilter(b, a, row) of each row of ``x`` into ``y``, from a zero state: scipy's
    direct form II transposed loop for float64, coefficients divided by a[0] first as it does."""
    taps = b.shape[0]
    a0 = a[0]
    bn = b / a0
    an = a / a0
    state = np.zeros(taps)
    for r in range(x.shape[0]):
        state[:] = 0.0
        for k in range(x.shape[1]):
            xn = x[r, k]
            yn = state[0] + bn[0] * xn
            for n in range(taps - 2):
                state[n] = state[n + 1] + xn * bn[n + 1] - yn * an[n + 1]
            state[taps - 2] = xn * bn[taps - 1] - yn * an[taps - 1]
            y[r, k] = yn


@numba.njit(cache=True, nogil=True)
def biquad(b, a, x, y):
    """lfilter_rows for one row of a second-order section, its state in registers (whole tracks)."""
    a0 = a[0]
    b0, b1, b2 = b[0] / a0, b[1] / a0, b[2] / a0
    a1, a2 = a[1] / a0, a[2] / a0
    z0 = 0.0
    z1 = 0.0
    for k in range(x.shape[0]):
        xn = x[k]
        yn = z0 + b0 * xn
        z0 = z1 + xn * b1 - yn * a1
        z1 = xn * b2 - yn * a2
        y[k] = yn


@numba.njit(cache=True, nogil=True)
def rolloff_and_rollon_start(rows, rolloff_thresh, lowered, rolloff, has_rolloff, start, at_start):
    """Per frame (row) of the bandwidth spectrogram: the last bin at or above ``rolloff_thresh``
    (``has_rolloff`` False and the last bin where none is, as ``argmax`` of an all-False row
    gives), and where the running sum first reaches ``lowered``: ``start`` = 1 + the number of
    cumulative sums below it, ``at_start`` the cumulative sum there (NaN where it never does).
    The running sum is NumPy's ``cumsum``: one addition after another, from the first bin."""
    frames, bins = rows.shape
    for r in range(frames):
        k = bins - 1
        while k >= 0 and not rows[r, k] >= rolloff_thresh:
            k -= 1
        has_rolloff[r] = k >= 0
        rolloff[r] = k if k >= 0 else bins - 1
        total = rows[r, 0]
        i = 0
        while not total >= lowered[r]:  # the row is non-negative: the sums never decrease
            i += 1
            if i == bins:
                break
            total = total + rows[r, i]
        start[r] = 1 + i
        at_start[r] = total if i < bins else np.nan


@numba.njit(cache=True, nogil=True)
def add_columns(total, block, first):
    """``for column in block.T[first:]: total += column``: each element of ``total`` gets the
    columns added one after another, in column order (walked row by row, in memory order)."""
    for i in range(block.shape[0]):
        acc = total[i]
        for j in range(first, block.shape[1]):
            acc += block[i, j]
        total[i] = acc


@numba.njit(cache=True, nogil=True)
def median_rows_by_column(x, out, half):
    """:func:`median_rows` for an array whose columns lie in memory (Fortran order): the same
    sorted windows, one per row, moved one column at a time for all rows together, so each step
    reads and writes memory in order instead of one element a row apart."""
    rows, n = x.shape
    size = 2 * half + 1
    windows = np.empty((rows, size), dtype=x.dtype)
    for i in range(size):
        j = _reflect(i - half, n)
        for r in range(rows):
            windows[r, i] = x[r, j]
    for r in range(rows):
        windows[r].sort()
        out[r, 0] = windows[r, half]
    for c in range(1, n):
        c_old = _reflect(c - half - 1, n)
        c_new = _reflect(c + half, n)
        for r in range(rows):
            out[r, c] = _slide(windows[r], x[r, c_old], x[r, c_new], half)


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


@numba.njit(cache=True, nogil=True)
def frame_peak_candidates(array, unprocessed, cthr, appended, kept):
    """``roughness_blocks.peaks``' first half for one frame: ``array`` framed by -2 into
    ``appended``, the local maxima at or above ``cthr`` (NumPy's ``diff`` tests), then the notch
    walk (:func:`peak_candidates`) into ``kept``. Returns how many were kept; -2 where a value is
    not finite and -3 where there is no local maximum (the caller's other branches); 0 or -1 where
    the package's own code must run."""
    n = array.shape[0]
    for i in range(n):
        if not (np.isfinite(array[i]) and np.isfinite(unprocessed[i])):
            return -2
    appended[0] = -2.0
    appended[n + 1] = -2.0
    appended[1:n + 1] = array
    mx = np.empty(n, dtype=np.int64)
    found = 0
    for i in range(n):
        if array[i] >= cthr and appended[i + 1] - appended[i] > 0 and appended[i + 2] - appended[i + 1] <= 0:
            mx[found] = i + 1
            found += 1
    if found == 0:
        return -3
    return peak_candidates(appended, mx[:found], cthr, kept)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def interpolate_peaks(unprocessed, freq, peaks, value, position):
    """``roughness_blocks.peaks``' parabolic interpolation of each kept peak (an index into the
    framed arrays) on the unprocessed spectrum, NumPy's expressions element by element; False
    where an interpolation is not finite (the package then skips a position: its own path)."""
    n = unprocessed.shape[0]
    for k in range(peaks.shape[0]):
        m = peaks[k]
        if 1 < m < n:  # the framed arrays' 1 < m < len - 2: both neighbours are real bins
            y0, ym, yp = unprocessed[m - 1], unprocessed[m - 2], unprocessed[m]
            p = (yp - ym) / (2 * (2 * y0 - yp - ym))
            if not np.isfinite(p):
                return False
            value[k] = y0 - (0.25 * (ym - yp) * p)
            if p >= 0:
                position[k] = ((1 - p) * freq[m - 1]) + (p * freq[m])
            else:
                position[k] = ((1 + p) * freq[m - 1]) - (p * freq[m - 2])
        else:  # a peak on the framing itself (m = 0 or n + 1) or on the first or last bin
            value[k] = -2.0 if m == 0 or m == n + 1 else unprocessed[m - 1]
            position[k] = -1.0 if m == 0 or m == n + 1 else freq[m - 1]
    return True


def warm() -> None:
    """Compile (or load from the cache) every signature the speed-ups call."""
    x = np.abs(np.sin(np.arange(64, dtype=np.float64)))
    envelope_loop(x, 0.01, 3.0)
    median_rows(np.ascontiguousarray(x.reshape(4, 16)), np.empty((4, 16)), 2)
    block = x.reshape(4, 16)
    median_rows(block.T, np.empty((16, 4)).T, 2)  # the transposed views of the column filter
    fortran = np.asfortranarray(block)
    median_rows_by_column(fortran, np.empty_like(fortran), 2)
    spectrum = (x + 1j * x[::-1]).reshape(4, 16)
    soft_split(spectrum, np.abs(spectrum), block, block, 1e-300, np.empty_like(spectrum),
               np.empty_like(spectrum))
    frames = np.ascontiguousarray(block)
    n = len(frames)
    rolloff_and_rollon_start(frames, 0.5, np.full(n, 0.5), np.empty(n, np.int64),
                             np.empty(n, np.bool_), np.empty(n, np.int64), np.empty(n))
    add_columns(np.zeros(len(frames)), frames, 1)
    spectrum_view = (frames + 0j).real  # scipy's spectrogram blocks: a strided view of a complex array
    add_columns(np.zeros(len(frames)), spectrum_view, 1)
    ones = np.ones(3)
    lfilter_rows(ones, ones, block, np.empty_like(block))
    biquad(ones, ones, x, np.empty_like(x))
    arr = np.concatenate(([-2.0], x, [-2.0]))
    mx = np.flatnonzero((arr[1:-1] >= 0.01) & (np.diff(arr)[:-1] > 0) & (np.diff(arr)[1:] <= 0)) + 1
    peak_candidates(arr, mx.astype(np.int64), 0.01, np.empty(len(mx), dtype=np.int64))
    kept = np.empty(len(x), dtype=np.int64)
    frame_peak_candidates(x, x, 0.01, np.empty(len(x) + 2), kept)
    interpolate_peaks(x, x, kept[:2] % len(x), np.empty(2), np.empty(2))
