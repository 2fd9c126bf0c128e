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
candidates with the same comparisons and runs that walk compiled
(``kernels.frame_peak_candidates``), sorts them with NumPy's own ``argsort`` (the order of equal
peaks is NumPy's), then interpolates each one compiled (``kernels.interpolate_peaks``: element by
element, the same IEEE operations). Frames where the package would raise, or meet a NaN, go to the package's
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
    from backends.extractors.timbral.kernels import frame_peak_candidates, interpolate_peaks

    array = np.asarray(array).ravel()
    unprocessed = np.asarray(unprocessed)
    freq = np.asarray(freq)
    if not (len(array) >= 4 and array.dtype == np.float64 and unprocessed.dtype == np.float64
            and unprocessed.ndim == 1 and len(unprocessed) == len(array) and freq.ndim == 1
            and freq.dtype == np.float64 and len(freq) == len(array)):
        return _package_peaks(util, array, unprocessed, freq, cthr)
    appended = np.empty(len(array) + 2)
    kept = np.empty(len(array), dtype=np.int64)
    count = frame_peak_candidates(array, unprocessed, float(cthr), appended, kept)
    if count == -3:  # no local maximum at or above the threshold
        return [], []
    if count <= 0:  # a NaN or infinity, or the package raises here (an empty slice)
        return _package_peaks(util, array, unprocessed, freq, cthr)
    finalmx = kept[:count]
    finalmx = finalmx[np.argsort(appended[finalmx])[::-1]]  # the package's descending sort
    value, position = np.empty(count), np.empty(count)
    if not interpolate_peaks(unprocessed, freq, finalmx, value, position):
        return _package_peaks(util, array, unprocessed, freq, cthr)
    return value, position


def _package_peaks(util, array, unprocessed, freq, cthr):
    detect = getattr(util.detect_peaks, "__wrapped__", util.detect_peaks)
    _, level, position = detect(array, cthr=cthr, unprocessed_array=unprocessed, freq=freq)
    return level, position


def _vassilakis(module, frame_freq, frame_level):
    """One frame's roughness, the package's expression for it."""
    if len(frame_freq) > 1:
        # np.kron(np.ones([n, 1]), v) is v in every row (1.0 * x is x): the same C-ordered
        # array from np.tile, without kron's own reshaping and concatenation per frame.
        f2 = np.tile(np.asarray(frame_freq, dtype=np.float64), (len(frame_freq), 1))
        f1 = f2.T
        v2 = np.tile(np.asarray(frame_level, dtype=np.float64), (len(frame_level), 1))
        v1 = v2.T
        x = v1 * v2
        y = (2 * v2) / (v1 + v2)
        z = module.plomp(f1, f2)
        rough = (x ** 0.1) * (0.5 * (y ** 3.11)) * z
        return np.sum(rough)
    return 0
