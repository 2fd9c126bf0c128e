"""``timbral_models``' blind RT60 estimate (``Timbral_Reverb.estimate_RT60``) with its per-frame
statistics computed for many frames at once.

The package slides a 7-sub-frame window (every 184 samples at 44.1 kHz, about 29,000 frames per
channel for two minutes) over each channel and, for every frame, takes the variance, maximum and
minimum of each sub-frame in Python to decide whether the frame holds a sound decay; only those
decays (about one frame in ten) go on to the maximum-likelihood fit. That bookkeeping, not the
fit, was two thirds of the function. Here the sub-frame statistics come from ``np.var``,
``max`` and ``min`` over rows of a block of windows (the same pairwise sums over the same
contiguous samples as the package's per-frame calls), the decay test is the package's test on
those numbers, and each decay frame is fitted by the package's own ``max_loglf`` on a fresh copy
of the same samples; the histogram and smoothing that follow stay a per-frame loop, as they
depend on the frames before. ``max_loglf`` itself raised each of its ten decay factors to the
powers 0..N-1 twice per decay frame (half of the function on real music); :func:`max_loglf`
keeps those power vectors and their log sums for each frame length (there are four). The
estimate is the package's, number for number (tests/extractors/timbral/ compares them).
"""
from __future__ import annotations

import numpy as np

FRAMES_PER_BLOCK = 2048  # 2048 frames x 644 samples x 8 bytes = 10 MB per statistic


def _decay_lengths(y: np.ndarray, offsets: np.ndarray, n_sub: int, nos_min: int,
                   nos_max: int) -> np.ndarray:
    """For each frame y[o : o + nos_max * n_sub], the package's sub-frame count ``cnt`` where a
    fit happens (``cnt >= nos_min`` when the decay test first fails), else 0."""
    from numpy.lib.stride_tricks import sliding_window_view

    first = sliding_window_view(y, n_sub)
    later = sliding_window_view(y, n_sub + 1)
    out = np.zeros(len(offsets), dtype=np.intp)
    for begin in range(0, len(offsets), FRAMES_PER_BLOCK):
        o = offsets[begin:begin + FRAMES_PER_BLOCK]
        rows = first[o]  # a contiguous copy: one sub-frame per row, as the package's seg
        var_pre, max_pre, min_pre = np.var(rows, axis=1), rows.max(axis=1), rows.min(axis=1)
        cnt = np.zeros(len(o), dtype=np.intp)
        alive = np.ones(len(o), dtype=bool)  # the package's loop has not broken out yet
        for k in range(2, nos_max):
            rows = later[o + (k - 1) * n_sub]
            var_cur, max_cur, min_cur = np.var(rows, axis=1), rows.max(axis=1), rows.min(axis=1)
            decays = (var_pre > var_cur) & (max_pre > max_cur) & (min_pre < min_cur)
            breaks = alive & ~decays
            fit = breaks & (cnt >= nos_min)
            out[begin:begin + len(o)][fit] = cnt[fit]
            alive &= decays
            cnt[alive] += 1
            var_pre = np.where(alive, var_cur, var_pre)
            max_pre = np.where(alive, max_cur, max_pre)
            min_pre = np.where(alive, min_cur, min_pre)
        # A frame that decays through every sub-frame is never fitted: the package's
        # ``if k == par['nos_max']`` can not be true inside ``range(2, nos_max)``.
    return out


def estimate_rt60(package_reverb):
    """A drop-in for ``package_reverb.estimate_RT60`` (the Timbral_Reverb module)."""
    original = package_reverb.estimate_RT60

    def estimate_RT60(audio_samples, fs):  # noqa: N802 - the package's name
        x = np.asarray(audio_samples)
        par = package_reverb.init_rt_estimate_e(fs)
        down, n_sub, shift = par['down'], par['N_sub'], par['N_shift']
        bl = par['N'] * down
        if not (bl < len(x)) or x.ndim != 1 or x.dtype != np.float64 or not np.isfinite(x).all():
            return original(audio_samples, fs)
        starts = np.arange(0, len(x) - bl + 1, shift)
        # Frame n is x[n : n + BL : down]: an offset into one of the ``down`` decimated phases.
        phases = [np.ascontiguousarray(x[p::down]) for p in range(down)]
        lengths = np.zeros(len(starts), dtype=np.intp)
        for p, y in enumerate(phases):
            mine = (starts % down) == p
            if mine.any():
                lengths[mine] = _decay_lengths(y, starts[mine] // down, n_sub, par['nos_min'],
                                               par['nos_max'])
        rt_est, rt_final = [], []
        a, tquant = par['a'], par['Tquant']
        fit = max_loglf(package_reverb.max_loglf)
        for n, cnt in zip(starts.tolist(), lengths.tolist()):
            rt_ml = -1
            if cnt:
                y = phases[n % down]
                o = n // down
                rt_ml, _ = fit(np.array(y[o:o + cnt * n_sub]), a, tquant)
            rt_est.append(_smooth(par, rt_ml))
            rt_final.append(rt_ml)
        rt_final = np.clip(rt_final, 0, max(rt_final))
        rt_est = np.array(rt_est)[np.where(rt_final > 0)]
        if rt_est.size:
            return np.mean(rt_est)
        return par['Tquant'][0]

    estimate_RT60.__wrapped__ = original
    return estimate_RT60


def max_loglf(original):
    """The package's ``max_loglf(h, a, Tquant)`` with the frame-independent terms kept.

    For each decay factor a[i] the package computes ``a[i] ** (-1.0 * n)`` and
    ``np.sum(np.log(a[i] ** n))`` for n = 0..N-1, which depend only on a[i] and the frame length
    N, and ``np.abs(h)``, the same for every i. Here they are made once per (a, N), each the same
    fresh contiguous array the package makes, and go into the package's expression unchanged: the
    same ``np.dot``, the same scalar arithmetic, the same ``argmax``.
    """
    cache: dict = {}

    def fit(h, a, tquant):
        if not (isinstance(h, np.ndarray) and h.ndim == 1 and h.dtype == np.float64 and len(h)
                and isinstance(a, np.ndarray) and a.ndim == 1 and a.dtype == np.float64):
            return original(h, a, tquant)
        n_len = len(h)
        key = (n_len, a.tobytes())
        terms = cache.get(key)
        if terms is None:
            n = np.arange(0, n_len)
            terms = cache[key] = [(a[i] ** (-1.0 * n), np.sum(np.log(a[i] ** n)))
                                  for i in range(len(a))]
        magnitude = np.abs(h.transpose())
        ll = np.zeros(len(a))
        for i, (powers, log_sum) in enumerate(terms):
            sum1 = np.dot(powers, magnitude)
            sigma = (1 / n_len) * sum1
            ll[i] = -n_len * np.log(2) - n_len * np.log(sigma) - log_sum - (1 / sigma) * sum1
        idx = np.argmax(ll)
        return tquant[idx], ll

    fit.__wrapped__ = original
    return fit


def _smooth(par: dict, rt_ml) -> float:
    """The package's histogram of fitted RT values and recursive smoothing, for one frame."""
    if rt_ml >= 0:
        par['hist_counter'] += 1
        for i in range(par['no_bins']):
            if (rt_ml >= par['hist_limits'][i]) and (rt_ml <= par['hist_limits'][i + 1]):
                index = i
                break
        par['hist_rt'][index] += 1
        if par['hist_counter'] > par['buffer_size'] + 1:
            par['hist_rt'][int(par['buffer'][0])] = par['hist_rt'][int(par['buffer'][0])] - 1
        par['buffer'] = np.append(par['buffer'][1:], index)
        idx = np.argmax(par['hist_rt'])
        par['RT_raw'] = par['Tquant'][idx]
    rt = par['alpha'] * par['RT_last'] + (1 - par['alpha']) * par['RT_raw']
    par['RT_last'] = rt
    return rt
