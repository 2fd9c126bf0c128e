"""``scipy.signal.spectrogram`` for long 1-D signals, made a block of frames at a time.

brightness and depth take three spectrograms each of the whole track (4096-sample Hamming
frames every 1024 samples); scipy builds each through several whole-size temporaries (detrended
frames, windowed frames, the complex FFT, its squared magnitude), about four times the 318 MB
result on a 7.5-minute track. Here each block of frames is scipy's own spectrogram of the samples
those frames read, written into the result: every frame gets the same detrending, window, FFT and
scaling, so the result is the same array with the temporaries of one block. It is laid out as
scipy's is (each frame's bins together, a transposed view): depth sums it over frames
(``np.sum(spec, axis=1)``), and NumPy adds in another order along a C-ordered row, which moved
those sums by a few units in the last place.
"""
from __future__ import annotations

import numpy as np

FRAMES_PER_BLOCK = 1024


def blockable(x: np.ndarray, nperseg, noverlap) -> bool:
    """Whether the frames of ``x`` can be cut here as scipy cuts them: long 1-D float64 input
    with whole-number segment and overlap lengths (anything else goes to scipy unchanged)."""
    return (x.ndim == 1 and x.dtype == np.float64 and isinstance(nperseg, (int, np.integer))
            and isinstance(noverlap, (int, np.integer)) and 0 <= noverlap < nperseg
            and len(x) >= nperseg)


def spectrogram(x, fs=1.0, window=('tukey', .25), nperseg=None, noverlap=None, nfft=None,
                detrend='constant', return_onesided=True, scaling='density', axis=-1, mode='psd'):
    from scipy import signal

    args = (fs, window, nperseg, noverlap, nfft, detrend, return_onesided, scaling, axis, mode)
    x = np.asarray(x)
    if not blockable(x, nperseg, noverlap):
        return signal.spectrogram(x, *args)
    step = nperseg - noverlap
    n_frames = (len(x) - nperseg) // step + 1
    if n_frames <= FRAMES_PER_BLOCK:
        return signal.spectrogram(x, *args)
    result = t = None
    for first in range(0, n_frames, FRAMES_PER_BLOCK):
        last = min(n_frames, first + FRAMES_PER_BLOCK)
        f, _, block = signal.spectrogram(x[first * step:(last - 1) * step + nperseg], *args)
        if result is None:
            result = np.empty((n_frames, block.shape[0]), dtype=block.dtype).T
        result[..., first:last] = block
    # scipy's own frame times for the whole signal (no boundary extension, not padded).
    t = np.arange(nperseg / 2, len(x) - nperseg / 2 + 1, step) / float(fs)
    return f, t, result
