"""``timbral_util.get_percussive_audio`` (hardness's harmonic/percussive energy ratio) one segment
of the track at a time.

The package takes librosa's STFT of the whole track, separates it (``hpss``) and inverts both
parts: three whole-track complex128 spectrograms (1.9 GB on a 7.5-minute track) plus hpss's
magnitudes and medians, the largest part of the module's peak. Every step is local in time: a
frame's STFT reads 2048 samples, the harmonic median reads 15 frames either side, an output
sample of the inverse STFT sums the 4 frames over it. So each segment of output samples is made
from its own frames plus those margins, with librosa's own ``stft``, the same ``hpss`` the
package would call, and librosa's own ``istft``; the samples it keeps are those whose every
frame, and every frame's median neighbourhood, lay inside the segment (or at the track's true
ends, where librosa reflects or pads just the same). The RMS envelopes and the weighted ratio are
then the package's code on the two reassembled signals. tests/extractors/timbral/test_timbral.py compares the ratio
with the package's.
"""
from __future__ import annotations

import numpy as np

N_FFT, HOP, MEDIAN_HALF = 2048, 512, 15
SEGMENT_FRAMES = 1536  # 18 s at 44.1 kHz; its complex spectra stay under malloc's 32 MiB reuse limit


def percussive_ratio(util):
    """A drop-in for ``util.get_percussive_audio`` (``return_ratio=True``; else the package's)."""
    original = util.get_percussive_audio

    def get_percussive_audio(audio_samples, return_ratio=True):
        y = np.asarray(audio_samples)
        n_frames = 1 + len(y) // HOP
        if (not return_ratio or y.ndim != 1 or y.dtype != np.float64
                or n_frames <= SEGMENT_FRAMES + 2 * (MEDIAN_HALF + 2)):
            return original(audio_samples, return_ratio)
        import librosa

        hpss = util.librosa.decompose.hpss
        out_len = HOP * (n_frames - 1)  # istft's length for a centred STFT
        percussive, harmonic = np.empty(out_len), np.empty(out_len)
        half = N_FFT // 2
        for a in range(0, n_frames, SEGMENT_FRAMES):
            b = min(n_frames, a + SEGMENT_FRAMES)
            keep_from, keep_to = a * HOP, min(out_len, b * HOP)
            if keep_from >= keep_to:
                break
            # Output sample m sums frames ceil((m - 1023) / 512) ... floor(m / 512) + 2.
            ta, tb = max(0, a - 2), min(n_frames, b + 2)
            ma, mb = max(0, ta - MEDIAN_HALF), min(n_frames, tb + MEDIAN_HALF)
            # Frames ma..mb-1 read the centred (zero-padded by 1024) signal at [ma*512, (mb-1)*512 + 2048).
            begin, end = ma * HOP - half, (mb - 1) * HOP + N_FFT - half
            piece = y[max(begin, 0):min(end, len(y))]
            if begin < 0 or end > len(y):
                piece = np.concatenate([np.zeros(max(0, -begin)), piece,
                                        np.zeros(max(0, end - len(y)))])
            spectrum = librosa.stft(piece, n_fft=N_FFT, hop_length=HOP, center=False)
            parts = hpss(spectrum)
            del spectrum
            for part, target in zip(parts, (harmonic, percussive)):
                # Frames ta..tb-1 of this segment, inverted; its sample 0 is padded sample ta*512,
                # output sample ta*512 - 1024.
                signal = librosa.istft(part[:, ta - ma:tb - ma], hop_length=HOP, n_fft=N_FFT,
                                       center=False)
                first = keep_from - (ta * HOP - half)
                target[keep_from:keep_to] = signal[first:first + keep_to - keep_from]
            del parts
        # The package's own ratio, on the two signals it would have had.
        percussive_energy = util.calculate_rms_enveope(percussive, step_size=1024, overlap_step=512,
                                                       normalise=False)
        harmonic_energy = util.calculate_rms_enveope(harmonic, step_size=1024, overlap_step=512,
                                                     normalise=False)
        ratio, t_power = [], []
        for p, h in zip(percussive_energy, harmonic_energy):
            if p != 0 or h != 0:
                ratio.append(p / (p + h))
                t_power.append(p + h)
        if t_power:
            return np.average(ratio, weights=t_power)
        return None

    get_percussive_audio.__wrapped__ = original
    return get_percussive_audio
