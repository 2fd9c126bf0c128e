"""Value-preserving accelerations of ``timbral_models`` 0.4.0 for a long-lived worker.

Profiling the eight functions on a 30 s mix showed where the time goes; each fix below leaves
every number the package computes unchanged (tests/test_timbral.py checks the eight outputs
against the unaccelerated package on the same audio):

* ``filter_design2`` designs the same 1/3-octave Butterworth filters again on every 93 ms window
  (two thirds of booming, sharpness and warmth): its result depends only on its scalar arguments,
  so it is cached.
* ``get_percussive_audio`` (hardness) separates the whole file's complex spectrogram into
  harmonic and percussive parts: six whole-signal complex128 arrays, 4.6 GB on a 7.5-minute
  track. :func:`blockwise_hpss_audio` does the same chunk by chunk with the overlaps the median
  filter and the overlap-add need, bit for bit.
* ``filter_third_octaves_downsample`` designs the same Chebyshev anti-aliasing filter at every
  octave of every window: ``timbral_util`` sees a ``scipy`` whose ``signal.cheby1`` is cached.
* ``specific_loudness`` is computed on identical windows by booming and by sharpness: cached by
  the window's bytes for the duration of one track (:func:`track_cache` clears it).
* ``sample_and_hold_envelope_calculation`` is a per-sample Python loop (~6 s per 30 s of audio,
  run by hardness, depth and warmth): the same recurrence, compiled with numba (a librosa
  dependency), in the same float64 arithmetic.
* ``get_bandwidth_array`` (hardness: 4096-sample frames every 128 samples) builds one float64
  spectrogram of the whole file (2.5 GB on a 7.5-minute track, before its temporaries) and then
  searches each frame's rollon with one ``np.sum`` per bin. Here the same spectrogram is computed
  in blocks of frames, once, each block's per-frame work done with whole-block operations, and the rollon confirmed with the package's own sums,
  so memory stays near 100 MB whatever the length and every bandwidth is bit for bit the same.
* The package calls Python's ``max``/``min`` on NumPy vectors tens of thousands of times (reverb,
  hardness): inside the package's modules those names resolve to versions that use NumPy's
  reduction for 1-D numeric arrays, with the builtin as fallback (and for NaN, where the two differ).

:func:`install` applies them; call it after ``timbral_compat.load()``.
"""
from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib

_MODULES = ("timbral_util", "Timbral_Brightness", "Timbral_Depth", "Timbral_Hardness",
            "Timbral_Roughness", "Timbral_Warmth", "Timbral_Sharpness", "Timbral_Booming",
            "Timbral_Reverb")
_loudness_cache: dict = {}
_caching = False


def _fast_reduce(builtin, method_name):
    import numpy as np

    def reduce(*args, **kwargs):
        if len(args) == 1 and not kwargs:
            x = args[0]
            if isinstance(x, np.ndarray) and x.ndim == 1 and x.size and x.dtype.kind in "fiu":
                value = getattr(x, method_name)()
                if value == value:  # not NaN: the builtin's answer with NaNs depends on order
                    return value
        return builtin(*args, **kwargs)

    reduce.__name__ = builtin.__name__
    return reduce


def _compiled_sample_and_hold():
    import numba
    import numpy as np

    @numba.njit(cache=False, nogil=True)
    def envelope_loop(abs_samples, decay, hold_samples):
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

    def sample_and_hold_envelope_calculation(audio_samples, fs, decay_time=0.2, hold_time=0.01):
        abs_samples = np.abs(np.asarray(audio_samples, dtype=np.float64))
        # builtins.max as in the package: the decay rate is relative to the peak level.
        decay = builtins.max(abs_samples) / (decay_time * fs)
        return envelope_loop(abs_samples, float(decay), float(hold_time * fs))

    return sample_and_hold_envelope_calculation


def _cached_specific_loudness(original):
    import numpy as np

    @functools.wraps(original)
    def specific_loudness(x, Pref, fs, Mod):  # noqa: N803 - the package's parameter names
        if not _caching:
            return original(x, Pref, fs, Mod)
        x = np.asarray(x)
        key = (hashlib.blake2b(x.tobytes(), digest_size=16).digest(), x.dtype.str, x.shape,
               Pref, fs, Mod)
        if key not in _loudness_cache:
            _loudness_cache[key] = original(x, Pref, fs, Mod)
        entire, single = _loudness_cache[key]
        return entire, np.array(single, copy=True)  # callers may modify what they get

    return specific_loudness


def _cached_filter_design(original):
    cached = functools.lru_cache(maxsize=256)(lambda Fc, fs, N: original(Fc, fs, N))

    @functools.wraps(original)
    def filter_design2(Fc, fs, N):  # noqa: N803
        b, a = cached(float(Fc), float(fs), int(N))
        return b.copy(), a.copy()

    return filter_design2


BANDWIDTH_BLOCK_VALUES = 4 << 20  # spectrogram values per block: 32 MB of float64


def _blockwise_bandwidth_array(original):
    """``get_bandwidth_array`` one block of spectrogram frames at a time, its per-frame loop done
    for a whole block at once.

    Hardness calls it with 4096-sample frames every 128 samples: the package's whole-file float64
    spectrogram is 2049 x 345 values per second of audio (5.6 MB/s; the 7.5-minute track needed
    2.5 GB before its temporaries), and its per-frame rollon search calls ``np.sum`` once per bin
    below the rollon (hundreds of calls per frame). Here each block's columns are the very same
    numbers (scipy computes every segment independently); the frame level, rolloff and rollon
    are found with whole-block operations, and the rollon is then confirmed with the package's own
    ``np.sum(seg[:k])`` on both sides of it, so every comparison the package makes sees the same
    values and the bandwidths come out bit for bit the same (tests/test_timbral.py)."""
    import numpy as np
    from scipy.signal import spectrogram

    def get_bandwidth_array(audio_samples, fs, nperseg=512, overlap_step=32, rolloff_thresh=0.01,
                            rollon_thresh_percent=0.05, log_bandwidth=False, return_centroid=False,
                            low_bandwidth_method='Percentile', normalisation_method='RMS_Time_Window'):
        x = np.asarray(audio_samples)
        n_frames = (len(x) - nperseg) // overlap_step + 1 if len(x) >= nperseg else 0
        if (low_bandwidth_method != 'Percentile' or normalisation_method not in ('RMS_Time_Window', 'none')
                or x.ndim != 1 or n_frames < 2 or return_centroid):
            return original(audio_samples, fs, nperseg, overlap_step, rolloff_thresh,
                            rollon_thresh_percent, log_bandwidth, return_centroid,
                            low_bandwidth_method, normalisation_method)
        noverlap = nperseg - overlap_step
        block_frames = max(64, BANDWIDTH_BLOCK_VALUES // (nperseg // 2 + 1))

        def blocks():
            for first in range(0, n_frames, block_frames):
                last = min(n_frames, first + block_frames)
                piece = x[first * overlap_step:(last - 1) * overlap_step + nperseg]
                f, _, spec = spectrogram(piece, fs, window='boxcar', nperseg=nperseg,
                                         noverlap=noverlap, scaling='density', mode='magnitude')
                if norm is not None:
                    spec /= norm
                yield f, spec

        norm = None
        if normalisation_method == 'RMS_Time_Window':  # the largest frame RMS, over the whole file
            norm = builtins.max(float(np.max(np.sqrt(np.sum(spec * spec, axis=0)))) for _, spec in blocks())
        # One pass: per frame its level, rolloff and rollon (none depends on the quiet-frame
        # threshold, which needs every frame's level first), kept as a few numbers per frame.
        levels, tpowers, rollons, rolloffs, has_rolloffs = [], [], [], [], []
        for f, spec in blocks():
            levels.append(np.sum(spec, axis=0))  # the package's level_with_time, column by column
            frames = np.ascontiguousarray(spec.T)  # one row per frame: np.sum(row) is np.sum(seg)
            tpower = np.sum(frames, axis=1)
            above = frames >= rolloff_thresh
            has_rolloffs.append(above.any(axis=1))
            rolloffs.append(frames.shape[1] - 1 - np.argmax(above[:, ::-1], axis=1))
            rollon_thresh = tpower * rollon_thresh_percent
            counters = np.argmax(np.cumsum(frames, axis=1) >= rollon_thresh[:, None], axis=1) + 1
            for i in range(frames.shape[0]):
                seg, counter, thresh = frames[i], int(counters[i]), rollon_thresh[i]
                # The package's answer: the first k with np.sum(seg[:k]) >= thresh, counting from 1.
                while counter > 1 and np.sum(seg[:counter - 1]) >= thresh:
                    counter -= 1
                while np.sum(seg[:counter]) < thresh:
                    counter += 1
                counters[i] = counter
            tpowers.append(tpower)
            rollons.append(counters)
        levels = np.concatenate(levels)
        max_l, min_l = np.max(levels), np.min(levels)
        min_tpower = (0.1 * (max_l - min_l)) + min_l
        bandwidth: list = []
        for tpower, counters, rolloff_idx, has_rolloff in zip(tpowers, rollons, rolloffs, has_rolloffs):
            for i in range(len(tpower)):
                if tpower[i] > min_tpower and has_rolloff[i]:
                    high, low = f[rolloff_idx[i]], f[counters[i] - 1]
                    bandwidth.append(np.log(high / float(low)) if log_bandwidth else high - low)
                else:
                    bandwidth.append(0)
        # scipy's own frame times for the whole signal (boundary=None, padded=False).
        t = np.arange(nperseg / 2, len(x) - nperseg / 2 + 1, nperseg - noverlap) / float(fs)
        return bandwidth, t, f

    return get_bandwidth_array


HPSS_CHUNK_FRAMES = 2048  # STFT frames of output per chunk: ~24 s of audio, ~35 MB per array
HPSS_MIN_FRAMES = 4096  # shorter audio goes through librosa's own whole-signal path


class _Separated:
    """What the lazy ``hpss`` hands back: one part's audio, already resynthesised."""

    def __init__(self, audio):
        self.audio = audio


class _LazyStft:
    def __init__(self, y):
        self.y = y


def blockwise_hpss_audio(y, n_fft=2048, hop=512, kernel=31, chunk_frames=None):
    """``istft(H), istft(P)`` for ``H, P = hpss(stft(y))`` with librosa's defaults, a chunk of
    frames at a time.

    Every number is the one the whole-signal pipeline computes: STFT frames are independent
    (taken here from the same zero-padded signal); the harmonic median filter runs along time
    with a 31-frame kernel, so each chunk is separated with 15 more frames on both sides (at the
    signal's true ends the filter's own reflection applies, as in the whole-signal run); the
    masks are per bin; and each output sample is the overlap-add of the same frames in the same
    order, divided by the same window sum. Memory: a few chunk-sized arrays instead of six
    whole-signal complex spectrograms (4.6 GB on a 7.5-minute track)."""
    import librosa
    import numpy as np

    chunk = chunk_frames or HPSS_CHUNK_FRAMES
    half, margin = n_fft // 2, kernel // 2
    n_frames = 1 + len(y) // hop
    length = hop * (n_frames - 1)  # what istft(center=True) returns without ``length``
    harmonic, percussive = np.zeros(length), np.zeros(length)

    def padded(first, last):  # samples [first, last) of y zero-padded by n_fft//2 on both sides
        out = np.zeros(last - first)
        lo, hi = max(first, half), min(last, half + len(y))
        if hi > lo:
            out[lo - first:hi - first] = y[lo - half:hi - half]
        return out

    for a in range(half, half + length, chunk * hop):  # padded coordinates of the output chunk
        b = min(a + chunk * hop, half + length)
        ja = max(0, -(-(a - n_fft + 1) // hop))  # frames that overlap samples [a, b)
        jb = min(n_frames, (b - 1) // hop + 1)
        fa, fb = max(0, ja - margin), min(n_frames, jb + margin)
        spec = librosa.stft(padded(fa * hop, (fb - 1) * hop + n_fft), n_fft=n_fft, hop_length=hop,
                            center=False)
        h, p = librosa.decompose.hpss(spec, kernel_size=kernel)
        for part, out in ((h, harmonic), (p, percussive)):
            audio = librosa.istft(part[:, ja - fa:jb - fa], n_fft=n_fft, hop_length=hop, center=False)
            out[a - half:b - half] = audio[a - ja * hop:b - ja * hop]
    return harmonic, percussive


def _librosa_with_blockwise_hpss(base):
    """``timbral_util``'s ``librosa`` (the compatibility proxy) with ``stft``/``hpss``/``istft``
    chained lazily for ``get_percussive_audio``: a whole-signal ``stft`` becomes a marker, ``hpss``
    of the marker separates chunk by chunk, ``istft`` of a part returns its audio. Anything else
    goes to librosa unchanged."""
    import types

    import numpy as np

    def stft(y, *args, **kwargs):
        if (not args and not kwargs and isinstance(y, np.ndarray) and y.ndim == 1
                and y.dtype == np.float64 and 1 + len(y) // 512 >= HPSS_MIN_FRAMES):
            return _LazyStft(y)
        return base.core.stft(y, *args, **kwargs)

    def hpss(S, *args, **kwargs):
        if isinstance(S, _LazyStft) and not args and not kwargs:
            harmonic, percussive = blockwise_hpss_audio(S.y)
            return _Separated(harmonic), _Separated(percussive)
        return base.decompose.hpss(S, *args, **kwargs)

    def istft(S, *args, **kwargs):
        if isinstance(S, _Separated) and not args and not kwargs:
            return S.audio
        return base.core.istft(S, *args, **kwargs)

    core = types.SimpleNamespace(**{**vars(base.core), "stft": stft, "istft": istft})
    decompose = types.SimpleNamespace(hpss=hpss, **{k: v for k, v in vars(base.decompose).items()
                                                    if not k.startswith("_") and k != "hpss"})
    return types.SimpleNamespace(**{**vars(base), "core": core, "decompose": decompose})


def _scipy_with_cached_cheby1():
    """What ``timbral_util`` sees as ``scipy``: the real module, except that ``signal.cheby1``
    remembers its filters. ``filter_third_octaves_downsample`` designs the same anti-aliasing
    filter (``cheby1(2, 0.1, 0.4)``) at every octave of every 93 ms window: a third of
    specific_loudness's time. Nothing else in the process sees the change."""
    import types

    import scipy
    import scipy.signal

    @functools.lru_cache(maxsize=64)
    def designed(*args):
        return scipy.signal.cheby1(*args)

    def cheby1(*args, **kwargs):
        if kwargs or not all(isinstance(a, (int, float)) for a in args):
            return scipy.signal.cheby1(*args, **kwargs)
        return tuple(c.copy() for c in designed(*args))

    class Signal(types.ModuleType):
        def __getattr__(self, name):
            return getattr(scipy.signal, name)

    class Scipy(types.ModuleType):
        def __getattr__(self, name):
            return getattr(scipy, name)

    signal = Signal("scipy.signal")
    signal.cheby1 = cheby1
    proxy = Scipy("scipy")
    proxy.signal = signal
    return proxy


@contextlib.contextmanager
def track_cache():
    """Share specific-loudness results between the functions run on one track, then free them."""
    global _caching
    _caching = True
    try:
        yield
    finally:
        _caching = False
        _loudness_cache.clear()


def install(package) -> None:
    """Apply the accelerations to the loaded ``timbral_models`` package (idempotent)."""
    import sys

    util = package.timbral_util
    if getattr(util, "_mirdeck_accelerated", False):
        return
    fast_max, fast_min = _fast_reduce(builtins.max, "max"), _fast_reduce(builtins.min, "min")
    for name in _MODULES:
        module = sys.modules[f"{package.__name__}.{name}"]
        module.max, module.min = fast_max, fast_min
    util.filter_design2 = _cached_filter_design(util.filter_design2)
    util.specific_loudness = _cached_specific_loudness(util.specific_loudness)
    util.sample_and_hold_envelope_calculation = _compiled_sample_and_hold()
    util.get_bandwidth_array = _blockwise_bandwidth_array(util.get_bandwidth_array)
    util.scipy = _scipy_with_cached_cheby1()
    util.librosa = _librosa_with_blockwise_hpss(util.librosa)
    util._mirdeck_accelerated = True
