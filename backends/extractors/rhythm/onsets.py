"""Onsets as the rhythm module detects them: librosa's spectral-flux onset detector at 22.05 kHz.

Its own module so that ``warmup`` can compile exactly this step without importing the extractor.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

ONSET_RATE = 22050
ONSET_HOP = 256  # 11.6 ms at 22.05 kHz
ONSET_FFT = 1024  # 46 ms


def detect_onsets(mono: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Onset times (s) and strengths: librosa's onset envelope at each onset, the mean
    rise in log power (dB) over 128 mel bands from one frame to the next."""
    import librosa
    import numpy as np

    envelope = librosa.onset.onset_strength(y=mono, sr=ONSET_RATE, n_fft=ONSET_FFT,
                                            hop_length=ONSET_HOP)
    if len(envelope) == 0 or not np.any(envelope > 0):
        return np.zeros(0), np.zeros(0)
    frames = librosa.onset.onset_detect(onset_envelope=envelope, sr=ONSET_RATE,
                                        hop_length=ONSET_HOP, units="frames")
    times = librosa.frames_to_time(frames, sr=ONSET_RATE, hop_length=ONSET_HOP)
    return np.asarray(times, dtype=np.float64), np.asarray(envelope[frames], dtype=np.float64)
