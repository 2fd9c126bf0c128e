"""librosa's default onset strength (``onset_strength(y=y, sr=sr)``) with its mel spectrogram made
a block of frames at a time.

librosa computes the whole complex STFT, its power and then the mel projection at once: for a
7.5-minute float64 track that is 2-3 GB of temporaries, to end in a 128-band mel spectrogram of
40 MB. Here each block of frames gets the same samples (the centred, zero-padded frames librosa
takes), the same FFT, power and mel matrix; the finished mel power spectrogram then goes through
librosa's own ``onset_strength(S=power_to_db(mel))``, exactly the steps librosa takes after its
own mel spectrogram. tests/extractors/timbral/test_timbral.py compares the envelopes with librosa's.
"""
from __future__ import annotations

import numpy as np

FRAMES_PER_BLOCK = 4096  # 1025 x 4096 complex128: 67 MB per block
N_FFT, HOP = 2048, 512


def mel_power(y: np.ndarray, sr: float) -> np.ndarray:
    """``librosa.feature.melspectrogram(y=y, sr=sr, fmax=sr / 2)`` (centred, zero padding)."""
    import librosa

    n_frames = 1 + len(y) // HOP
    basis = librosa.filters.mel(sr=sr, n_fft=N_FFT, fmax=0.5 * sr)
    out = np.empty((basis.shape[0], n_frames), dtype=y.dtype)
    half = N_FFT // 2
    for first in range(0, n_frames, FRAMES_PER_BLOCK):
        last = min(n_frames, first + FRAMES_PER_BLOCK)
        # Samples of frames first..last-1 in the padded signal, padded here with the zeros
        # librosa's centring adds at the two ends.
        begin, end = first * HOP - half, (last - 1) * HOP + half
        piece = y[max(begin, 0):min(end, len(y))]
        if begin < 0 or end > len(y):
            piece = np.concatenate([np.zeros(max(0, -begin), y.dtype), piece,
                                    np.zeros(max(0, end - len(y)), y.dtype)])
        power = np.abs(librosa.stft(piece, n_fft=N_FFT, hop_length=HOP, center=False)) ** 2.0
        out[:, first:last] = np.einsum("...ft,mf->...mt", power, basis, optimize=True)
    return out


def onset_strength(y: np.ndarray, sr: float) -> np.ndarray:
    """``librosa.onset.onset_strength(y=y, sr=sr)`` for a 1-D float signal."""
    import librosa

    return librosa.onset.onset_strength(S=librosa.power_to_db(np.abs(mel_power(y, sr))), sr=sr)
