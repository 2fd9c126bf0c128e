"""Each DSP measure against an independent implementation: ffmpeg's ebur128 filter for loudness,
loudness range and true peak, pyloudnorm for integrated loudness, essentia's per-frame
algorithms for the vectorised spectral features, scipy's Welch for the band levels."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import soundfile

from backends.extractors.loudness import measure
from tests.support import dsp_signals as sig
from tui import demo

SIGNALS = {
    "sine at −23 dBFS": lambda: sig.sine(1000, 20, -23.0),
    "pink noise in steps −14/−20/−26/−34 dB": lambda: sig.level_steps([-14, -20, -26, -34], 8.0),
    "white noise, left only louder": lambda: sig.shaped_noise(15, rms_dbfs=-18) * np.array([[1.0, 0.3]], np.float32),
    "demo groove (drums, bass, chords)": lambda: _demo_groove(),
    "crescendo pink noise": lambda: sig.shaped_noise(30, exponent=1.0, rms_dbfs=-20)
    * np.linspace(0.05, 1.0, 30 * sig.RATE, dtype=np.float32)[:, None],
}


def _demo_groove() -> np.ndarray:
    rng = np.random.default_rng(5)
    mono = demo.drums(120, 20, rng) + demo.bassline([45, 41, 36, 43], 120, 20) * 0.6 \
        + demo.progression([[57, 60, 64], [53, 57, 60]], 120, 20) * 0.5
    return sig.stereo(mono / np.max(np.abs(mono)) * 0.9)


def ffmpeg_ebur128(path) -> dict[str, float]:
    proc = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-i", str(path), "-af", "ebur128=peak=true",
                           "-f", "null", "-"], capture_output=True, text=True, check=True)
    summary = proc.stderr[proc.stderr.rindex("Summary:"):]
    return {"lufs": float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary)[1]),
            "lra": float(re.search(r"LRA:\s+(-?[\d.]+) LU", summary)[1]),
            "true_peak": float(re.search(r"Peak:\s+(-?[\d.]+) dBFS", summary)[1])}


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is installed by bin/setup")
@pytest.mark.parametrize("name", list(SIGNALS))
def test_loudness_agrees_with_ffmpeg_ebur128(tmp_path, name):
    data = SIGNALS[name]()
    path = tmp_path / "signal.wav"
    soundfile.write(path, data, sig.RATE, subtype="FLOAT")
    ours = measure(data, sig.RATE, true_peak=True)
    theirs = ffmpeg_ebur128(path)
    # ffmpeg prints one decimal: 0.2 LU and 1 LU are the tolerances.
    assert ours["lufs"] == pytest.approx(theirs["lufs"], abs=0.2)
    assert ours["lra"] == pytest.approx(theirs["lra"], abs=1.0)
    assert ours["true_peak_dbtp"] == pytest.approx(theirs["true_peak"], abs=0.2)


def test_level_steps_have_the_loudness_range_of_their_construction():
    # Four 8 s sections 6, 6 and 8 dB apart: short-term loudness spans ~20 LU; EBU 3342's 10th to
    # 95th percentile of 3 s windows (overlapping two sections at the joins) lands a little inside.
    got = measure(sig.level_steps([-14, -20, -26, -34], 8.0), sig.RATE, true_peak=False)
    assert 14.0 < got["lra"] <= 20.5


@pytest.mark.parametrize("name", list(SIGNALS))
def test_integrated_loudness_agrees_with_pyloudnorm(name):
    import pyloudnorm

    data = SIGNALS[name]()
    theirs = pyloudnorm.Meter(sig.RATE).integrated_loudness(data.astype(np.float64))
    assert measure(data, sig.RATE, true_peak=False)["lufs"] == pytest.approx(theirs, abs=0.1)


def test_vectorised_spectral_features_match_essentia_per_frame():
    from backends.dsp import essentia_standard
    from backends.extractors.spectral import FRAME, HOP, RATE, frame_features

    es = essentia_standard()
    audio = np.ascontiguousarray(_demo_groove()[:, 0] * 0.5
                                 + sig.shaped_noise(20, exponent=1.0, rms_dbfs=-40, channels=1)[:, 0])
    ours = frame_features(audio)
    window, spectrum = es.Windowing(type="hann", size=FRAME), es.Spectrum(size=FRAME)
    flatness, flux = es.Flatness(), es.Flux(norm="L2")
    moments, shape = es.CentralMoments(range=RATE / 2), es.DistributionShape()
    theirs = {"flatness": [], "flux": [], "skewness": [], "kurtosis": []}
    for i, frame in enumerate(es.FrameGenerator(audio, frameSize=FRAME, hopSize=HOP, startFromZero=True,
                                                validFrameThresholdRatio=1)):
        mag = spectrum(window(frame))
        theirs["flatness"].append(flatness(np.square(mag) + np.float32(1e-20)))
        change = flux(mag / np.linalg.norm(mag))
        if i:
            theirs["flux"].append(change)
        _, skewness, kurtosis = shape(moments(mag))
        theirs["skewness"].append(skewness)
        theirs["kurtosis"].append(kurtosis)
    for name in theirs:
        assert len(ours[name]) == len(theirs[name]), name  # the noise floor keeps every frame loud
        assert np.median(ours[name]) == pytest.approx(np.median(theirs[name]), rel=0.01), name


def test_band_levels_match_scipy_welch():
    import scipy.signal

    from backends.extractors.multiband_rms import BANDS, SEGMENT, band_mean_squares

    data = _demo_groove()
    freqs, psd = scipy.signal.welch(data.T.astype(np.float64), fs=sig.RATE, window="hann", nperseg=SEGMENT,
                                    noverlap=SEGMENT // 2, detrend=False, axis=-1)
    psd = psd.mean(axis=0)
    ours = band_mean_squares(data)
    for band, (low, high) in BANDS.items():
        theirs = psd[(freqs >= low) & (freqs < high)].sum() * (freqs[1] - freqs[0])
        assert 10 * np.log10(ours[band]) == pytest.approx(10 * np.log10(theirs), abs=0.01), band


@pytest.mark.parametrize("extra", [0, 4095, 4097])
def test_pitch_class_profiles_match_essentia_per_frame(extra):
    """chroma's and harmonic's front end (blocked FFT, essentia's peaks, whitening and HPCP called
    past the Python wrapper) against essentia's own chain called frame by frame."""
    from backends.dsp import essentia_standard, mono
    from backends.extractors import chroma

    es = essentia_standard()
    # A quiet stretch first: frames under -80 dBFS are not kept.
    audio = np.concatenate([np.zeros(3 * 4096, np.float32), mono(_demo_groove()),
                            np.zeros(extra, np.float32)])
    profiles, kept = chroma.hpcp_frames(audio, es)

    window, spectrum = es.Windowing(type="hann", size=4096), es.Spectrum(size=4096)
    peaks = es.SpectralPeaks(orderBy="magnitude", magnitudeThreshold=1e-4, maxPeaks=60,
                             minFrequency=chroma.MIN_HZ, maxFrequency=chroma.MAX_HZ, sampleRate=44100)
    whitening = es.SpectralWhitening(maxFrequency=chroma.MAX_HZ, sampleRate=44100)
    hpcp = es.HPCP(size=12, referenceFrequency=440.0, bandPreset=False, minFrequency=chroma.MIN_HZ,
                   maxFrequency=chroma.MAX_HZ, weightType="cosine", nonLinear=False, windowSize=1.0,
                   normalized="unitMax", sampleRate=44100)
    expected, expected_kept = [], []
    for frame in es.FrameGenerator(audio, frameSize=4096, hopSize=4096, startFromZero=True,
                                   validFrameThresholdRatio=1):
        row = np.zeros(12, np.float32)
        loud = float(np.dot(frame, frame)) / 4096 > 10 ** (chroma.QUIET_DBFS / 10)
        if loud:
            magnitude = spectrum(window(frame))
            freqs, mags = peaks(magnitude)
            if len(freqs):
                row = hpcp(freqs, whitening(magnitude, freqs, mags))
        expected.append(np.roll(row, -chroma.C_BIN))
        expected_kept.append(loud and row.max() > 0)
    assert profiles.shape == (len(expected), 12)
    np.testing.assert_array_equal(kept, expected_kept)
    assert not kept[:3].any() and kept.sum() > len(kept) * 0.8
    np.testing.assert_allclose(profiles, np.array(expected), atol=2e-4)
