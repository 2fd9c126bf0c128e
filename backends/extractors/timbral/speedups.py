"""Value-preserving accelerations of ``timbral_models`` 0.4.0 for a long-lived worker.

Profiling the eight functions (benchmarks/timbral_profile.py: each alone in its own process, with
its peak RSS and where it happened) showed where the time and memory go; each fix below leaves
the numbers the package computes unchanged, save the one noted (tests/extractors/timbral/test_timbral.py checks each
replaced piece against the package's own, and the eight outputs against the unaccelerated
package on the file path):

* ``filter_design2`` designs the same 1/3-octave Butterworth filters again on every 93 ms window
  (two thirds of booming, sharpness and warmth): its result depends only on its scalar arguments,
  so it is cached.
* ``specific_loudness`` is computed on identical windows by booming and by sharpness: cached by
  the window's bytes for the duration of one track (:func:`track_cache` clears it).
* ``sample_and_hold_envelope_calculation`` is a per-sample Python loop (~6 s per 30 s of audio,
  run by hardness, depth and warmth): the same recurrence, compiled with numba (a librosa
  dependency), in the same float64 arithmetic.
* ``get_bandwidth_array``: hardness asks for 4096-sample frames every 128 samples with no
  normalisation (2049 x 155,000 float64 on a 7.5-minute track, and scipy's complex intermediate
  twice that: the module's worst peak before this), then walks it frame by frame in Python.
  Here the same spectrogram is made in blocks of frames and the per-frame loop is vectorised
  (an earlier version of this layer blocked only the package's default settings, which none of
  the eight functions uses).
* ``filter_third_octaves_downsample`` designs the same Chebyshev anti-aliasing filter at each of
  its eight decimation steps for every window: ``timbral_util`` sees a ``scipy.signal`` whose
  ``cheby1`` remembers its designs, and whose ``lfilter``, like the module's own, is the
  compiled copy of scipy's loop (backends/extractors/timbral/iir_filter.py).
* ``file_read``: seven functions mono-sum and loudness-normalise the same array; done once per
  track, each function gets its own copy.
* ``librosa.decompose.hpss`` (hardness): its two 31-point median filters as sliding medians
  (backends/extractors/timbral/sliding_median.py), masks and products in one compiled pass; and
  ``get_percussive_audio``, which separates and inverts the whole track's STFT, one segment at a
  time (backends/extractors/timbral/hpss_segments.py; the ratio agrees to 1e-12 relative).
* ``librosa.onset.onset_strength``/``onset_detect`` (hardness, depth, warmth): the mel
  spectrogram in blocks of frames (backends/extractors/timbral/onset_blocks.py). The one change that is not bit
  for bit: BLAS sums a block's mel projection in another order than the whole track's, a few
  units in the last place of the mel powers.
* brightness's and depth's whole-track spectrograms (three each, 950 MB on a 7.5-minute track,
  which depth held through its onsets, the module's next peak): their loops read them a column
  at a time, so each is a backends/extractors/timbral/spectrogram_columns.py spectrogram that makes a block of
  frames when the loop reaches it; depth's sum over frames is added up block by block in NumPy's
  order. Where a whole array is needed, backends/extractors/timbral/spectrogram_blocks.py makes scipy's without its
  whole-size temporaries.
* :func:`mono_float64`: the worker hands the seven functions that mono-sum the track that sum, in
  float64, made by the package's ``channel_reduction`` a block of rows at a time, instead of the
  whole stereo float64 copy beside their work (reverb's stereo float64 is made after them).
* ``Timbral_Reverb.estimate_RT60``: the per-frame sub-frame statistics in blocks
  (backends/extractors/timbral/reverb_frames.py); ``timbral_roughness``: its spectrogram in blocks
  (backends/extractors/timbral/roughness_blocks.py).
* The package calls Python's ``max``/``min`` on NumPy vectors tens of thousands of times (reverb,
  hardness): inside the package's modules those names resolve to versions that use NumPy's
  reduction for 1-D numeric arrays, with the builtin as fallback (and for NaN, where the two differ).

* ``calculate_rms_enveope``: blocks of windows as rows (backends/extractors/timbral/rms_envelope.py).
* hardness's bandwidth frames: the rolloff and the rollon start in one compiled scan
  (:func:`rolloff_and_rollon`), the package's pairwise-sum loop only at near ties.

Beside these the worker keeps freed memory in its heap (backends/heap_reuse.py): the package's
whole-track temporaries otherwise cost a page fault per page, every time.
docs/performance.md ("Real music") has what each change saved.

:func:`install` applies them; call it after ``timbral_compat.load()``.
"""
from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib
import types

_MODULES = ("timbral_util", "Timbral_Brightness", "Timbral_Depth", "Timbral_Hardness",
            "Timbral_Roughness", "Timbral_Warmth", "Timbral_Sharpness", "Timbral_Booming",
            "Timbral_Reverb")
_loudness_cache: dict = {}
_read_cache: dict = {}
_onset_cache: dict = {}  # (signal digest, dtype, shape, rate) -> its onset strength envelope
_octave_levels: dict = {}  # (window digest, Pref, fs) -> the window's filter-bank levels
_pending_windows: list = []  # windows cut in this track whose levels are not made yet
_current_levels = None  # (window, arguments, levels) while specific_loudness runs on it
_window_digests: list = []  # [windows, {row: digest}] of the function now cutting windows
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
    import numpy as np

    from backends.extractors.timbral.kernels import envelope_loop

    def sample_and_hold_envelope_calculation(audio_samples, fs, decay_time=0.2, hold_time=0.01):
        abs_samples = np.abs(np.asarray(audio_samples, dtype=np.float64))
        # The decay rate is relative to the peak level. The package takes it with Python's max
        # over the samples (1.65 s on 7.7 minutes); NumPy's is the same number unless there is
        # a NaN, where the builtin's answer depends on where the NaN is.
        peak = abs_samples.max() if abs_samples.size else None
        if peak is None or peak != peak:
            peak = builtins.max(abs_samples)
        decay = peak / (decay_time * fs)
        return envelope_loop(abs_samples, float(decay), float(hold_time * fs))

    return sample_and_hold_envelope_calculation


@functools.lru_cache(maxsize=1)
def _fastest_hash() -> str:
    """sha256 where the CPU has SHA instructions (twice blake2b's speed then), else blake2b:
    the track caches hash every 93 ms window and, seven times, the whole track (2 CPU s on 7
    minutes with blake2b). Keys live for one track in one process, so either will do."""
    import time

    sample = bytes(1 << 22)
    seconds = {}
    for name in ("blake2b", "sha256"):
        began = time.perf_counter()
        hashlib.new(name, sample).digest()
        seconds[name] = time.perf_counter() - began
    return min(seconds, key=seconds.__getitem__)


def _window_digest(x) -> bytes:
    """:func:`_digest` of a row of the windows :func:`_remembered_windows` cut last, made once:
    booming, sharpness and warmth look up each window's loudness by its digest, and the batch
    digests every window first (7,000 window hashes on two minutes, half of them repeats).
    Those windows are read-only (no caller writes into them: timbral_models 0.4.0, read), so a
    row's digest stays its digest while the array lives; the array is held here only until the
    function that cut it is done (:func:`function_done`)."""
    import numpy as np

    if _window_digests and isinstance(x, np.ndarray) and x.ndim == 1:
        windows, digests = _window_digests
        offset = x.__array_interface__["data"][0] - windows.__array_interface__["data"][0]
        row, rest = divmod(offset, windows.strides[0]) if windows.strides[0] > 0 else (-1, 1)
        if (not rest and 0 <= row < len(windows) and x.shape == windows.shape[1:]
                and x.strides == windows.strides[1:] and x.dtype == windows.dtype
                and (x.base is windows or x.base is windows.base)):
            digest = digests.get(row)
            if digest is None:
                digest = digests[row] = _digest(x)
            return digest
    return _digest(x)


def function_done() -> None:
    """Between two timbral functions of a track: forget the last one's windows."""
    _window_digests.clear()


def _digest(x) -> bytes:
    # A contiguous array is hashed where it lies: tobytes() would copy a whole track first
    # (162 MB on 7 minutes at 48 kHz, the module's peak in warmth).
    data = x.data if x.flags.c_contiguous else x.tobytes()
    return hashlib.new(_fastest_hash(), data).digest()


LOUDNESS_BATCH_WINDOWS = 256  # 4096-sample windows filtered together: 8 MB per copy
# specific_loudness's own filter bank arguments (Fmin, Fmax, order), fixed in the package.
_LOUDNESS_BANK = (25, 12500, 4)


def _cached_specific_loudness(original, util):
    """``specific_loudness`` shared within a track, its filter bank run for all windows at once.

    Its callers cut the track with ``window_audio`` and ask for one window at a time; the windows
    :func:`_remembered_windows` saw are filtered together on the first miss
    (backends/extractors/timbral/third_octaves.py), and the package's own ``specific_loudness``
    then gets each window's levels from ``filter_third_octaves_downsample`` instead of filtering.
    """
    import numpy as np

    from backends.extractors.timbral import third_octaves

    def precompute(Pref, fs):  # noqa: N803
        while _pending_windows:
            windows = _pending_windows.pop()
            digests = [_window_digest(row) for row in windows]
            todo = [i for i, d in enumerate(digests) if (d, Pref, fs) not in _octave_levels]
            if not todo:
                continue
            for first in range(0, len(todo), LOUDNESS_BATCH_WINDOWS):
                rows = todo[first:first + LOUDNESS_BATCH_WINDOWS]
                try:
                    levels = third_octaves.batch(util, windows[rows], Pref, fs, *_LOUDNESS_BANK)
                except Exception:  # anything unusual: the package's path, with its own errors
                    levels = None
                if levels is None:
                    return
                for i, result in zip(rows, levels):
                    _octave_levels[(digests[i], Pref, fs)] = result

    @functools.wraps(original)
    def specific_loudness(x, Pref, fs, Mod):  # noqa: N803 - the package's parameter names
        global _current_levels
        if not _caching:
            return original(x, Pref, fs, Mod)
        x = np.asarray(x)
        digest = _window_digest(x)
        key = (digest, x.dtype.str, x.shape, Pref, fs, Mod)
        if key in _loudness_cache:
            # A caller whose windows are known already: nothing to batch, and its windows must
            # not stay referenced here for the rest of the track (162 MB each on 7 minutes).
            _pending_windows.clear()
        else:
            if x.ndim == 1 and x.dtype == np.float64:
                precompute(Pref, fs)
                levels = _octave_levels.get((digest, Pref, fs))
                _current_levels = None if levels is None else (x, (Pref, fs) + _LOUDNESS_BANK, levels)
            try:
                _loudness_cache[key] = original(x, Pref, fs, Mod)
            finally:
                _current_levels = None
        entire, single = _loudness_cache[key]
        return entire, np.array(single, copy=True)  # callers may modify what they get

    return specific_loudness


def _precomputed_third_octaves(original):
    """``filter_third_octaves_downsample`` that hands ``specific_loudness`` the levels of the
    window it is working on when they were made with the others (the same arguments, the same
    array), and filters as the package does otherwise."""
    import numpy as np

    @functools.wraps(original)
    def filter_third_octaves_downsample(x, Pref, fs, Fmin, Fmax, N):  # noqa: N803
        current = _current_levels
        if current is not None and current[0] is x and current[1] == (Pref, fs, Fmin, Fmax, N):
            total, levels, bands = current[2]
            return total, np.array(levels, copy=True), np.array(bands, copy=True)
        return original(x, Pref, fs, Fmin, Fmax, N)

    return filter_third_octaves_downsample


def _remembered_windows(original):
    """``window_audio`` that, within a track, notes the windows it cut for the loudness batch."""

    @functools.wraps(original)
    def window_audio(audio_samples, window_length=4096):
        windows = original(audio_samples, window_length)
        if _caching and getattr(windows, "ndim", 0) == 2:
            _pending_windows[:] = [windows]  # only the caller now at work asks for its windows
            windows.flags.writeable = False  # its rows' digests are made once (_window_digest)
            _window_digests[:] = [windows, {}]
        return windows

    return window_audio


def _shared_file_read(original):
    """``file_read`` of one track's array done once per set of options, for the whole track.

    Seven of the eight functions start with the same mono sum and loudness normalisation of the
    same array (pyloudnorm's K-weighting and gating over the whole track each time). Inside
    :func:`track_cache` the result for an array object is remembered and each caller gets its own
    copy, so no function sees what another did to its samples.
    """
    import numpy as np

    @functools.wraps(original)
    def file_read(fname, fs=0, phase_correction=False, mono_sum=True, loudnorm=True,
                  resample_low_fs=True):
        # Only the normalising reads are worth it (reverb reads the raw channels: no work to save).
        if not _caching or not loudnorm or not isinstance(fname, np.ndarray):
            return original(fname, fs, phase_correction, mono_sum, loudnorm, resample_low_fs)
        key = (id(fname), fs, phase_correction, mono_sum, loudnorm, resample_low_fs)
        hit = _read_cache.get(key)
        if hit is None or hit[0] is not fname:  # the array itself is kept, so its id stays its own
            # The package's read never writes into the array it is given (mono sum and
            # normalisation make new arrays), so the caller's array needs no defensive copy.
            hit = (fname, original(fname, fs, phase_correction, mono_sum, loudnorm,
                                   resample_low_fs))
            _read_cache[key] = hit
        samples, rate = hit[1]
        return samples.copy(), rate

    return file_read


def _fast_hpss():
    """librosa's ``decompose.hpss`` for the arguments the package uses (all defaults), with its
    two median filters run as sliding medians (backends/extractors/timbral/sliding_median.py).

    The rest is librosa's own code path, step by step: ``magphase``, the medians into arrays of
    the magnitude's type, ``softmask`` with ``split_zeros`` (both margins are 1), the masked
    magnitudes times the phase; the magnitude is taken once (librosa's magphase takes it again
    with each phase), and the two soft masks share their scale and ratios. Medians select, they
    do not compute, so the masks and the separated spectra are the same numbers; scipy's rank
    filter took 13 of the package's CPU seconds on a 120 s track.
    """
    import librosa
    import numpy as np

    from backends.extractors.timbral.sliding_median import median_filter_1d

    def hpss(S, *, kernel_size=31, power=2.0, mask=False, margin=1.0):
        if (kernel_size != 31 or power != 2.0 or mask or margin != 1.0 or S.ndim != 2
                or not np.iscomplexobj(S)):
            return librosa.decompose.hpss(S, kernel_size=kernel_size, power=power, mask=mask,
                                          margin=margin)
        # magphase(S)[0], without the whole-track phase that magphase also makes (power 1).
        magnitude = np.abs(S)
        harm = median_filter_1d(magnitude, kernel_size, axis=-1)
        perc = median_filter_1d(magnitude, kernel_size, axis=-2)
        if harm is None or perc is None:
            return librosa.decompose.hpss(S, kernel_size=kernel_size, power=power, mask=mask,
                                          margin=margin)
        if S.dtype != np.complex128:
            return librosa.decompose.hpss(S, kernel_size=kernel_size, power=power, mask=mask,
                                          margin=margin)
        from backends.extractors.timbral.kernels import soft_split

        # Masks, phase and products are element by element: one compiled pass into the two
        # results instead of NumPy's whole-size temporaries (2 GB on 7.5 minutes, and a tenth of
        # the module's CPU time in their allocation and passes).
        inputs = [S, magnitude, harm, perc]
        if all(x.flags.f_contiguous for x in inputs):  # librosa's STFT is Fortran-ordered
            harmonic, percussive = np.empty_like(S, order="F"), np.empty_like(S, order="F")
            views = [x.T for x in inputs + [harmonic, percussive]]  # C-ordered: rows in memory order
        else:
            harmonic, percussive = np.empty_like(S, order="C"), np.empty_like(S, order="C")
            views = [np.ascontiguousarray(x) for x in inputs] + [harmonic, percussive]
        soft_split(*views[:4], np.finfo(magnitude.dtype).tiny, *views[4:])
        return harmonic, percussive

    return hpss


def _blockwise_onsets(librosa_proxy):
    """The proxy's ``onset`` namespace with librosa's default onset strength computed from a mel
    spectrogram made in blocks (backends/extractors/timbral/onset_blocks.py): librosa's own, for the whole track
    at once, holds gigabytes of temporaries on a 7.5-minute track (depth, warmth, hardness)."""
    import numpy as np

    from backends.extractors.timbral import onset_blocks

    def plain(y, kwargs):
        return not kwargs and isinstance(y, np.ndarray) and y.ndim == 1 and y.dtype.kind == "f"

    def envelope(y, sr):
        # hardness, depth and warmth ask for the envelope of the same signal seven times in all
        # (onset_detect and onset_strength in calculate_onsets, hardness once more): within a
        # track it is made once per distinct signal (two: hardness pads its copy).
        if not _caching:
            return onset_blocks.onset_strength(y, sr)
        key = (_digest(y), y.dtype.str, y.shape, sr)
        if key not in _onset_cache:
            _onset_cache[key] = onset_blocks.onset_strength(y, sr)
        return _onset_cache[key].copy()

    def onset_strength(y=None, sr=22050, **kwargs):
        if plain(y, kwargs):
            return envelope(y, sr)
        return librosa_proxy.onset.onset_strength(y, sr, **kwargs)

    def onset_detect(y=None, sr=22050, **kwargs):
        if plain(y, {k: v for k, v in kwargs.items() if k not in ("backtrack", "units")}):
            import librosa

            return librosa.onset.onset_detect(y=y, sr=sr, onset_envelope=envelope(y, sr), **kwargs)
        return librosa_proxy.onset.onset_detect(y, sr, **kwargs)

    return types.SimpleNamespace(onset_strength=onset_strength, onset_detect=onset_detect)


def _cached_filter_design(original):
    cached = functools.lru_cache(maxsize=256)(lambda Fc, fs, N: original(Fc, fs, N))

    @functools.wraps(original)
    def filter_design2(Fc, fs, N):  # noqa: N803
        b, a = cached(float(Fc), float(fs), int(N))
        return b.copy(), a.copy()

    return filter_design2


class _CachedDesigns:
    """``scipy.signal`` as ``timbral_util`` sees it, with ``cheby1`` designs remembered.

    ``filter_third_octaves_downsample`` designs the same anti-aliasing Chebyshev filter
    (``cheby1(2, 0.1, 0.4)``) at each of its eight decimation steps, for each 93 ms window: that
    design was half the cost of the specific loudness. The design depends only on its arguments.
    Everything else is the real ``scipy.signal``.
    """

    def __init__(self, signal):
        self._signal = signal
        self._cheby1 = functools.lru_cache(maxsize=32)(signal.cheby1)

    def cheby1(self, *args, **kwargs):
        try:
            b, a = self._cheby1(*args, **kwargs)
        except TypeError:  # unhashable arguments: design it afresh
            return self._signal.cheby1(*args, **kwargs)
        return b.copy(), a.copy()

    def lfilter(self, b, a, x, axis=-1, zi=None):
        from backends.extractors.timbral.iir_filter import lfilter

        return lfilter(b, a, x, axis, zi, _scipy=self._signal.lfilter)

    def __getattr__(self, name):
        return getattr(self._signal, name)


BANDWIDTH_BLOCK_FRAMES = 1024  # hardness: 2049 bins x 1024 frames x 8 bytes = 17 MB per block
# Relative margin below the rollon threshold where the exact per-frame search starts: far larger
# than the rounding of a sum of <= 2049 non-negative float64 terms (about 2049 * 1.1e-16).
_ROLLON_MARGIN = 1e-9


def _blockwise_bandwidth_array(original):
    """``get_bandwidth_array`` one block of frames at a time, its per-frame loop vectorised.

    The package builds the whole spectrogram at once: hardness asks for 4096-sample frames every
    128 samples, 2049 x 155,000 float64 on a 7.5-minute track (2.5 GB, plus scipy's complex
    intermediate twice that), then walks it frame by frame in Python. Here each block's frames get
    the same FFT (scipy's own ``spectrogram`` on the block's samples), and per frame the same
    numbers decide: the frame level (``np.sum(spec, axis=0)``: a per-column sum, the same in a
    block as in the whole), the frame power (``np.sum`` of the column, pairwise, the same on a
    contiguous row of the transposed block), the rolloff (last bin at or above the threshold) and
    the rollon. The package finds the rollon by summing ``seg[:k]`` for k = 1, 2, ... until the
    sum reaches 5 % of the frame power; a cumulative sum finds where to start that same loop,
    just below the answer, so only the last one or two of its sums are evaluated. Frames below the
    package's "quiet frame" level (10 % up the range of frame levels over the whole file) are
    zeroed at the end, once the range is known. Only the settings the timbral functions use
    (Percentile rollon, no centroid) take this path; anything else goes to the package.
    """
    import numpy as np

    def get_bandwidth_array(audio_samples, fs, nperseg=512, overlap_step=32, rolloff_thresh=0.01,
                            rollon_thresh_percent=0.05, log_bandwidth=False, return_centroid=False,
                            low_bandwidth_method='Percentile', normalisation_method='RMS_Time_Window'):
        x = np.asarray(audio_samples)
        n_frames = (len(x) - nperseg) // overlap_step + 1 if len(x) >= nperseg else 0
        if (low_bandwidth_method != 'Percentile' or return_centroid
                or normalisation_method not in ('RMS_Time_Window', 'none')
                or x.ndim != 1 or x.dtype != np.float64 or n_frames < 2
                or not np.isfinite(x).all()):
            return original(audio_samples, fs, nperseg, overlap_step, rolloff_thresh,
                            rollon_thresh_percent, log_bandwidth, return_centroid,
                            low_bandwidth_method, normalisation_method)
        noverlap = nperseg - overlap_step
        block = builtins.max(1, BANDWIDTH_BLOCK_FRAMES)

        magnitudes = boxcar_magnitudes(fs, nperseg, noverlap)

        def blocks():
            for first in range(0, n_frames, block):
                last = min(n_frames, first + block)
                piece = x[first * overlap_step:(last - 1) * overlap_step + nperseg]
                yield magnitudes.freqs, magnitudes(piece).T  # laid out as scipy's spectrogram

        norm = None
        if normalisation_method == 'RMS_Time_Window':
            # The package divides the spectrogram by its largest frame RMS: one more pass.
            norm = builtins.max(float(np.max(np.sqrt(np.sum(spec * spec, axis=0))))
                                for _, spec in blocks())
        levels, bandwidth = [], []
        for f, spec in blocks():
            if norm is not None:
                spec /= norm
            levels.append(np.sum(spec, axis=0))
            rows = np.ascontiguousarray(spec.T)  # one frame per row, as the package's seg
            del spec
            tpower = np.sum(rows, axis=1)
            rolloff, has_rolloff, rollon = rolloff_and_rollon(rows, tpower, rolloff_thresh,
                                                              tpower * rollon_thresh_percent)
            low = f[np.maximum(rollon - 1, 0)]
            high = f[rolloff]
            with np.errstate(divide='ignore', invalid='ignore'):
                width = np.log(high / low) if log_bandwidth else high - low
            bandwidth.append((tpower, has_rolloff, width))
        levels = np.concatenate(levels)
        max_l, min_l = np.max(levels), np.min(levels)
        min_tpower = (0.1 * (max_l - min_l)) + min_l
        out = []
        for tpower, has_rolloff, width in bandwidth:
            for loud, rolls, value in zip((tpower > min_tpower).tolist(), has_rolloff.tolist(),
                                          width.tolist()):
                out.append(value if loud and rolls else 0)  # int 0, as the package appends
        # scipy's own frame times for the whole signal (boundary=None, padded=False).
        t = np.arange(nperseg / 2, len(x) - nperseg / 2 + 1, nperseg - noverlap) / float(fs)
        return out, t, f

    return get_bandwidth_array


def rolloff_and_rollon(rows, tpower, rolloff_thresh, rollon_thresh):
    """Per frame (a row of magnitudes, ``tpower`` its ``np.sum``): the rolloff bin (the last at or
    above ``rolloff_thresh``), whether there is one, and the package's rollon counter: the first
    k with ``np.sum(row[:k]) >= rollon_thresh`` (0 for a silent frame).

    A compiled scan finds both the rolloff and where the running sum first gets within
    ``_ROLLON_MARGIN`` of the rollon threshold. Where the running sum there is over the threshold
    by more than the margin, the package's pairwise sum is too (the two differ by ~1e-13
    relative), so its loop stops at once; elsewhere, the rare near tie, the package's loop runs
    on from there."""
    import numpy as np

    from backends.extractors.timbral.kernels import rolloff_and_rollon_start

    n = len(rows)
    rolloff, has_rolloff = np.empty(n, np.int64), np.empty(n, np.bool_)
    start, at_start = np.empty(n, np.int64), np.empty(n)
    rolloff_and_rollon_start(rows, float(rolloff_thresh), rollon_thresh * (1 - _ROLLON_MARGIN),
                             rolloff, has_rolloff, start, at_start)
    clear = at_start >= rollon_thresh * (1 + _ROLLON_MARGIN)
    rollon = np.where(clear & (tpower > 0), start, 0)
    for i in np.flatnonzero((tpower > 0) & ~clear):
        seg, thresh, counter = rows[i], rollon_thresh[i], int(start[i])
        while np.sum(seg[:counter]) < thresh:  # the package's loop, from near its end
            counter += 1
        rollon[i] = counter
    return rolloff, has_rolloff, rollon


def boxcar_magnitudes(fs, nperseg: int, noverlap: int):
    """``scipy.signal.spectrogram(x, fs, window='boxcar', nperseg, noverlap, scaling='density',
    mode='magnitude')`` of 1-D float64 blocks, one frame per row (the transpose of scipy's).

    scipy's own steps for these arguments, without the two that change no number: it multiplies
    the detrended frames by the boxcar as a complex array (``x * (1 + 0j)``, whose real part, the
    part it keeps, is x exactly) and copies the scaled spectrum once more for its output type.
    The frames, their detrending, the FFT, the scale and the magnitude are scipy's calls.
    """
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view
    from scipy import fft as sp_fft
    from scipy import signal as sp_signal

    win = sp_signal.get_window('boxcar', nperseg)
    win = win.astype(np.result_type(win, np.float64, np.complex64))
    scale = np.sqrt(1.0 / (fs * (win * win).sum()))  # density scaling, square-rooted for 'stft'
    step = nperseg - noverlap

    def magnitudes(x):
        frames = sliding_window_view(x, window_shape=nperseg, axis=-1)[..., 0::step, :]
        frames = sp_signal.detrend(frames, type='constant', axis=-1)
        spectrum = sp_fft.rfft(frames, n=nperseg)
        del frames
        spectrum *= scale
        return np.abs(spectrum)

    magnitudes.freqs = sp_fft.rfftfreq(nperseg, 1 / fs)
    return magnitudes


MONO_BLOCK_FRAMES = 1 << 16


def mono_float64(data, util):
    """The decoded ``[frames, channels]`` PCM as the package's reads sum it, before normalising.

    ``file_read`` on a float64 array (what ``soundfile.read`` gives) with ``mono_sum=True`` calls
    ``channel_reduction``, whose output row depends only on its input row: the package's own
    function on blocks of rows converted to float64 gives the same samples without the whole
    stereo float64 copy (318 MB on a 7.5-minute track). The package then finds nothing to sum in
    the 1-D result. One channel: the 1-D float64 column, as ``always_2d=False`` reads it.
    """
    import numpy as np

    if data.ndim == 1 or data.shape[1] == 1:
        return np.array(data.reshape(len(data)), dtype=np.float64)
    mono = None
    for first in range(0, len(data), MONO_BLOCK_FRAMES):
        rows = np.asarray(data[first:first + MONO_BLOCK_FRAMES], dtype=np.float64)
        summed = util.channel_reduction(rows, phase_correction=False)
        if mono is None:
            mono = np.empty((len(data),) + summed.shape[1:], dtype=summed.dtype)
        mono[first:first + len(rows)] = summed
    return mono


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
        _read_cache.clear()
        _octave_levels.clear()
        _pending_windows.clear()
        _onset_cache.clear()
        _window_digests.clear()


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
    # The module reaches scipy.signal through its name ``scipy``; only that module sees the cache.
    util.scipy = types.SimpleNamespace(signal=_CachedDesigns(util.scipy.signal),
                                       stats=util.scipy.stats)
    from backends.extractors.timbral.iir_filter import lfilter

    util.lfilter = lfilter  # filter_audio_highpass / lowpass: whole-track Butterworth sections
    util.specific_loudness = _cached_specific_loudness(util.specific_loudness, util)
    util.filter_third_octaves_downsample = _precomputed_third_octaves(
        util.filter_third_octaves_downsample)
    util.window_audio = _remembered_windows(util.window_audio)
    util.sample_and_hold_envelope_calculation = _compiled_sample_and_hold()
    util.file_read = _shared_file_read(util.file_read)
    # timbral_util reaches librosa through timbral_compat's proxy; only its hpss changes.
    proxy = util.librosa
    onsets = _blockwise_onsets(proxy)
    util.librosa = types.SimpleNamespace(**{**vars(proxy), "onset": onsets,
                                            "decompose": types.SimpleNamespace(hpss=_fast_hpss())})
    from backends.extractors.timbral import spectrogram_columns
    from backends.extractors.timbral.hpss_segments import percussive_ratio

    for name in ("Timbral_Brightness", "Timbral_Depth"):  # both imported scipy's by name
        sys.modules[f"{package.__name__}.{name}"].spectrogram = spectrogram_columns.spectrogram

    util.get_percussive_audio = percussive_ratio(util)
    from backends.extractors.timbral.rms_envelope import rms_envelope

    util.calculate_rms_enveope = rms_envelope(util)
    hardness = sys.modules[f"{package.__name__}.Timbral_Hardness"]
    hardness.librosa = types.SimpleNamespace(**{**vars(hardness.librosa), "onset": onsets})
    util.get_bandwidth_array = _blockwise_bandwidth_array(util.get_bandwidth_array)
    from backends.extractors.timbral.reverb_frames import estimate_rt60

    reverb = sys.modules[f"{package.__name__}.Timbral_Reverb"]
    reverb.estimate_RT60 = estimate_rt60(reverb)
    from backends.extractors.timbral.roughness_blocks import roughness

    package.timbral_roughness = package.Timbral_Roughness.timbral_roughness = roughness(package)
    util._mirdeck_accelerated = True
