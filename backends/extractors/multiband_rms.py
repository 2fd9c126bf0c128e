"""RMS level of the full mix in four frequency bands, in dBFS.

The mean square in a band is the integral of the signal's power spectral density over that band
(Parseval), estimated with Welch's method (Hann, 16384-sample segments = 2.7 Hz bins at 44.1 kHz,
50 % overlap, scipy's FFT) per channel and averaged over channels. That gives sharp band edges
(no filter skirts leaking a loud bass into the body band) at FFT speed.
"""
from __future__ import annotations

from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track

# Band name -> [low, high) in Hz. The names are read by users' data loaders.
BANDS = {
    "bass": (20.0, 120.0),
    "body": (120.0, 600.0),
    "mid": (600.0, 2500.0),
    "air": (2500.0, 22000.0),
}

SPEC = BackendSpec(
    name="multiband_rms",
    version="1",
    description="RMS level (dBFS) in bass 20-120 Hz, body 120-600 Hz, mid 600-2500 Hz, air 2.5-22 kHz",
    keys=tuple(f"rms_energy_{band}" for band in BANDS),
    audio=(AudioNeed("mix", 44100),),
    timeout_s=600,
)

RATE = 44100
SEGMENT = 16384


def band_mean_squares(data, rate: int = RATE) -> dict[str, float]:
    """Mean square (full scale = 1.0) of ``data`` ``[frames, channels]`` in each band of ``BANDS``.

    Averaged over channels, like the RMS of a stereo file; 10·log10 of it is the band's dBFS
    (a full-scale sine inside one band reads −3.01 dBFS there, as ``rms_dbfs`` does).
    """
    import numpy as np
    import scipy.fft

    from backends.extractors.spectral import frame_matrix

    # Welch's estimate written out (scipy.signal.welch is ~5x slower here: it works in float64
    # on all segments at once); tests/test_multiband_rms.py checks it against scipy.signal.welch.
    window = np.hanning(SEGMENT + 1)[:SEGMENT].astype(np.float32)  # periodic Hann
    spectrum_sum = np.zeros(SEGMENT // 2 + 1)
    segments = 0
    for channel in range(data.shape[1]):
        signal = np.ascontiguousarray(data[:, channel], dtype=np.float32)
        frames = frame_matrix(signal, SEGMENT, SEGMENT // 2)
        for start in range(0, len(frames), 256):  # 256 segments at a time: ~17 MB
            spectrum = scipy.fft.rfft(frames[start:start + 256] * window, axis=1)
            spectrum_sum += np.sum(np.square(spectrum.real) + np.square(spectrum.imag), axis=0,
                                   dtype=np.float64)
            segments += len(spectrum)
    # One-sided density: bins 1..N/2-1 stand for both signs of frequency.
    scale = np.full(SEGMENT // 2 + 1, 2.0)
    scale[0] = scale[-1] = 1.0
    per_bin = spectrum_sum * scale / (segments * SEGMENT * float(np.sum(np.square(window, dtype=np.float64))))
    freqs = np.arange(SEGMENT // 2 + 1) * rate / SEGMENT
    return {band: float(per_bin[(freqs >= low) & (freqs < high)].sum())
            for band, (low, high) in BANDS.items()}


class MultibandRms(Extractor):
    def process(self, track: Track) -> Result:
        from backends.dsp import db_power
        from backends.protocol import BadInput

        data, rate = track.audio("mix", RATE)
        if data.shape[0] < SEGMENT:
            raise BadInput(f"{track.mix.path}: {data.shape[0] / rate * 1000:.0f} ms is too short to resolve "
                           f"the 20-120 Hz band (needs {SEGMENT / rate * 1000:.0f} ms)")
        features = {}
        for band, mean_square in band_mean_squares(data, rate).items():
            key = f"rms_energy_{band}"
            features[key] = db_power(mean_square)
            if features[key] is None:
                low, high = BANDS[band]
                track.note(key, f"no energy at all in {low:g}-{high:g} Hz (digital silence there)")
        return Result(features)


def create() -> MultibandRms:
    from importlib.metadata import version

    return MultibandRms(model_provenance={"libraries": f"scipy {version('scipy')}"})
