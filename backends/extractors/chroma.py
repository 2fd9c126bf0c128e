"""Pitch-class profile (chroma) and key of the full mix.

``chroma_0`` … ``chroma_11`` (C, C#, … B) is the mean over frames of essentia's ``HPCP`` (12
bins, each frame scaled to max 1), scaled so that the strongest pitch class is 1. ``key``,
``scale`` and ``key_strength`` come from essentia's ``KeyExtractor`` (profile "bgate"), whose
front end (4096-sample Hann frames, spectral peaks 25–3500 Hz, whitening, cosine-weighted
HPCP tuned to 440 Hz) the chroma uses too, so the profile and the key describe the same thing.
"""
from __future__ import annotations

from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track

PITCH_CLASSES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

SPEC = BackendSpec(
    name="chroma",
    version="2",
    description="mean pitch-class profile chroma_0..11 (C..B, max 1) and key, scale, key_strength",
    keys=tuple(f"chroma_{i}" for i in range(12)) + ("key", "scale", "key_strength"),
    audio=(AudioNeed("mix", 44100),),
    timeout_s=600,
)

RATE = 44100
FRAME = 4096
HOP = 4096
MIN_HZ, MAX_HZ = 25.0, 3500.0
KEY_PROFILE = "bgate"
# Frames quieter than this (frame RMS, dBFS) carry no pitch, only noise floor.
QUIET_DBFS = -80.0
# essentia's HPCP bin 0 is its reference frequency, A (440 Hz); C is 3 semitones above A.
C_BIN = 3


# Frames whose magnitude spectra are made at once: 512 x 2049 float32, 4 MB.
SPECTRA_PER_BLOCK = 512


def magnitude_spectra(audio, es):
    """essentia's ``Spectrum(Windowing(hann)(frame))`` of each whole 4096-sample frame (what
    ``FrameGenerator(startFromZero=True, validFrameThresholdRatio=1)`` cuts), a block of frames
    at a time: one FFT call per block instead of two essentia calls per frame. The window is
    read from essentia's own Windowing (normalised; its zero-phase rotation does not change a
    magnitude)."""
    import numpy as np
    import scipy.fft

    window = np.asarray(es.Windowing(type="hann", size=FRAME, zeroPhase=False)(
        np.ones(FRAME, np.float32)), np.float32)
    if len(audio) < FRAME:
        return
    count = 1 + (len(audio) - FRAME) // HOP
    framed = np.lib.stride_tricks.sliding_window_view(audio, FRAME)[::HOP][:count]
    for first in range(0, count, SPECTRA_PER_BLOCK):
        block = framed[first:first + SPECTRA_PER_BLOCK]
        yield block, np.abs(scipy.fft.rfft(block * window, axis=1))


def hpcp_frames(audio, es):
    """Per-frame 12-bin HPCP of mono float32 ``audio`` at 44.1 kHz, rotated so column 0 is C.

    Returns ``(profiles [frames, 12], kept [frames] bool)``; each kept row has max 1 and frames
    under ``QUIET_DBFS`` or with no spectral peak are not kept (their row is zero).
    """
    import numpy as np

    from backends.dsp import per_frame

    audio = np.ascontiguousarray(audio, dtype=np.float32)
    peaks = es.SpectralPeaks(orderBy="magnitude", magnitudeThreshold=1e-4, maxPeaks=60,
                             minFrequency=MIN_HZ, maxFrequency=MAX_HZ, sampleRate=RATE)
    whitening = es.SpectralWhitening(maxFrequency=MAX_HZ, sampleRate=RATE)
    hpcp = es.HPCP(size=12, referenceFrequency=440.0, bandPreset=False, minFrequency=MIN_HZ,
                   maxFrequency=MAX_HZ, weightType="cosine", nonLinear=False, windowSize=1.0,
                   normalized="unitMax", sampleRate=RATE)
    peaks, whitening, hpcp = per_frame(peaks), per_frame(whitening), per_frame(hpcp)
    quiet_ms = 10 ** (QUIET_DBFS / 10)
    rows, kept = [], []
    for frames, spectra in magnitude_spectra(audio, es):
        loud = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / FRAME > quiet_ms
        for is_loud, mag in zip(loud, spectra):
            profile = np.zeros(12, dtype=np.float32)
            if is_loud:
                freqs, mags = peaks(mag)
                if len(freqs):
                    profile = hpcp(freqs, whitening(mag, freqs, mags))
            rows.append(profile)
            kept.append(bool(is_loud) and bool(profile.max() > 0))
    profiles = np.roll(np.array(rows, dtype=np.float32).reshape(-1, 12), -C_BIN, axis=1)
    return profiles, np.array(kept, dtype=bool)


class Chroma(Extractor):
    def __init__(self, es, **kwargs):
        super().__init__(**kwargs)
        self.es = es

    def process(self, track: Track) -> Result:
        from backends.dsp import mono
        from backends.protocol import BadInput

        data, rate = track.audio("mix", RATE)
        if data.shape[0] < FRAME:
            raise BadInput(f"{track.mix.path}: {data.shape[0] / rate * 1000:.0f} ms is shorter than one "
                           f"{FRAME / rate * 1000:.0f} ms chroma frame")
        audio = mono(data)
        profiles, kept = hpcp_frames(audio, self.es)
        track.progress(0.7, "chroma")
        features: dict[str, float | str | None] = {}
        if not kept.any():
            reason = f"no frame louder than {QUIET_DBFS:g} dBFS with a spectral peak: no pitch to profile"
            for key in SPEC.keys:
                features[key] = None
                track.note(key, reason)
            return Result(features)
        mean = profiles[kept].mean(axis=0)
        mean = mean / mean.max()
        features.update({f"chroma_{i}": float(v) for i, v in enumerate(mean)})
        key, scale, strength = self.es.KeyExtractor(profileType=KEY_PROFILE, sampleRate=RATE,
                                                    frameSize=FRAME, hopSize=HOP)(audio)
        # "A minor" in one field: what AudioCraft-style loaders put into the text condition.
        features.update({"key": f"{key} {scale}", "scale": scale, "key_strength": float(strength)})
        return Result(features)


def create() -> Chroma:
    from backends.dsp import essentia_provenance, essentia_standard

    return Chroma(essentia_standard(), model_provenance={**essentia_provenance(),
                                                         "key_profile": KEY_PROFILE})
