"""``timbral_models``' ``timbral_roughness`` with its spectrogram made block by block.

The package windows the whole track into a 4096 x frames float64 matrix (50 ms frames every
25 ms, zero-padded), takes its complex FFT at once and keeps magnitude and normalised copies:
about 5 GB on a 7.5-minute track. Nothing in the model needs them all at once but the global
minimum and maximum of the magnitudes, used to normalise before peak picking. Here the frames
go through the same FFT a block at a time and only the magnitudes are kept (8 bytes per bin, a
quarter of the package's arrays), the minimum and maximum taken over them; then each frame gets
the package's peak picking and its Vassilakis sum, written as the package writes them. Each
column sees the same samples, window and FFT length as in the package.

Peak picking (``timbral_util.detect_peaks``) walks the local maxima of each frame with Python's
``min`` and ``max`` on tiny slices, millions of calls per track: :func:`peaks` finds the same
candidates with the same NumPy comparisons, runs that walk compiled (``kernels.peak_candidates``)
and then the package's sort and parabolic interpolation, vectorised (element by element, the
same IEEE operations). Frames where the package would raise, or meet a NaN, go to the package's
own function. tests/extractors/timbral/ compares the outputs.
"""
from __future__ import annotations

import numpy as np

FRAMES_PER_BLOCK = 512  # 4096 x 512 complex128 = 34 MB per block


def roughness(package):
    """A drop-in for ``package.timbral_roughness`` (defaults only; anything else goes to it)."""
    module = package.Timbral_Roughness
    util = package.timbral_util
    original = module.timbral_roughness

    def timbral_roughness(fname, dev_output=False, phase_correction=False, clip_output=False,
                          fs=0, peak_picking_threshold=0.01):
        audio_samples, fs = util.file_read(fname, fs, phase_correction=phase_correction)
        audio_samples = np.pad(audio_samples, (512, 0), 'constant', constant_values=(0.0, 0.0))
        audio_len = len(audio_samples)
        step_samples = int(fs * 0.05)
        if audio_len <= step_samples or audio_samples.ndim != 1:
            return original(fname, dev_output=dev_output, phase_correction=phase_correction,
                            clip_output=clip_output, fs=fs, peak_picking_threshold=peak_picking_threshold)
        nfft = step_samples
        window = np.hamming(nfft + 2)[1:-1]
        olap = nfft / 2
        num_frames = int(audio_len / (step_samples - olap))
        next_pow_2 = 2 ** int(np.log(step_samples) / np.log(2) + 1)
        spec_len = int(next_pow_2 / 2) + 1
        # The package fills column i from int(i * nfft / 2) while a whole frame fits; the rest
        # of its num_frames columns stay zero.
        starts = [int(i * (nfft / 2.0)) for i in range(num_frames)]
        filled = sum(1 for s in starts if s + step_samples <= audio_len)

        spectra = []
        lowest, highest = np.inf, -np.inf
        for first in range(0, num_frames, FRAMES_PER_BLOCK):
            last = min(num_frames, first + FRAMES_PER_BLOCK)
            frames = np.zeros([next_pow_2, last - first])
            for i in range(first, min(last, filled)):
                frames[:step_samples, i - first] = (
                    audio_samples[starts[i]:starts[i] + step_samples] * window)
            spec = np.absolute(np.fft.fft(frames, axis=0)[:spec_len, :])
            del frames
            lowest, highest = min(lowest, np.min(spec)), max(highest, np.max(spec))
            spectra.append(spec)
        freq = fs / 2 * np.linspace(0, 1, spec_len)
        allroughness = []
        while spectra:
            spec = spectra.pop(0)
            norm_spec = (spec - lowest) / (highest - lowest)
            for i in range(spec.shape[1]):
                frame_level, frame_freq = peaks(util, norm_spec[:, i], spec[:, i], freq,
                                                peak_picking_threshold)
                allroughness.append(_vassilakis(module, frame_freq, frame_level))
        mean_roughness = np.mean(allroughness)
        if dev_output:
            return [mean_roughness]
        if mean_roughness < 0.01:
            return 0
        value = np.log10(mean_roughness) * 13.98779569 + 48.97606571545886
        if clip_output:
            value = util.output_clip(value)
        return value

    timbral_roughness.__wrapped__ = original
    return timbral_roughness


def peaks(util, array, unprocessed, freq, cthr):
    """``detect_peaks(array, freq=freq, cthr=cthr, unprocessed_array=unprocessed)``'s peak
    values and positions (what roughness uses of it), for 1-D float64 frames."""
    from backends.extractors.timbral.kernels import peak_candidates

    array = array.flatten()
    unprocessed = np.asarray(unprocessed)
    if not (len(array) >= 4 and array.dtype == np.float64 and unprocessed.dtype == np.float64 and unprocessed.ndim == 1
            and len(unprocessed) == len(array) and np.ndim(freq) == 1 and len(freq) == len(array)
            and np.isfinite(array).all() and np.isfinite(unprocessed).all()):
        return _package_peaks(util, array, unprocessed, freq, cthr)
    appended = _framed(array, -2.0)  # the package's np.insert(array, [0, len], -2.0)
    diff = np.diff(appended)
    mx = np.flatnonzero((array >= cthr) & (diff[0:-1] > 0) & (diff[1:] <= 0)) + 1
    if not mx.size:
        return [], []
    kept = np.empty(len(mx), dtype=np.int64)
    count = peak_candidates(appended, mx.astype(np.int64), float(cthr), kept)
    if count <= 0:  # the package raises here (an empty slice, or no peak to index with)
        return _package_peaks(util, array, unprocessed, freq, cthr)
    finalmx = kept[:count]
    finalmx = finalmx[np.argsort(appended[finalmx])[::-1]]  # the package's descending sort
    un = _framed(unprocessed, -2.0)
    f = _framed(freq, -1.0)
    inner = (1 < finalmx) & (finalmx < len(un) - 2)
    c = np.where(inner, finalmx, 2)  # any valid index where the package takes no neighbours
    y0, ym, yp = un[c], un[c - 1], un[c + 1]
    with np.errstate(all="ignore"):
        p = (yp - ym) / (2 * (2 * y0 - yp - ym))
        value = y0 - (0.25 * (ym - yp) * p)
        position = np.where(p >= 0, ((1 - p) * f[c]) + (p * f[c + 1]),
                            ((1 + p) * f[c]) - (p * f[c - 1]))
    if not np.isfinite(p[inner]).all():  # the package then skips a position: its own path
        return _package_peaks(util, array, unprocessed, freq, cthr)
    value = np.where(inner, value, un[finalmx])
    position = np.where(inner, position, f[finalmx])
    return value, position


def _framed(x, edge):
    """``x`` with ``edge`` before and after: np.insert's result, without its per-call overhead
    (three calls per frame were a sixth of peak picking)."""
    out = np.empty(len(x) + 2, dtype=np.result_type(x, edge))
    out[0] = out[-1] = edge
    out[1:-1] = x
    return out


def _package_peaks(util, array, unprocessed, freq, cthr):
    detect = getattr(util.detect_peaks, "__wrapped__", util.detect_peaks)
    _, level, position = detect(array, cthr=cthr, unprocessed_array=unprocessed, freq=freq)
    return level, position


def _vassilakis(module, frame_freq, frame_level):
    """One frame's roughness, the package's expression for it."""
    if len(frame_freq) > 1:
        f2 = np.kron(np.ones([len(frame_freq), 1]), frame_freq)
        f1 = f2.T
        v2 = np.kron(np.ones([len(frame_level), 1]), frame_level)
        v1 = v2.T
        x = v1 * v2
        y = (2 * v2) / (v1 + v2)
        z = module.plomp(f1, f2)
        rough = (x ** 0.1) * (0.5 * (y ** 3.11)) * z
        return np.sum(rough)
    return 0
