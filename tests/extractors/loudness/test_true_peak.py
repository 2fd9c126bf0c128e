"""The pruned true peak against libebur128's whole-signal true peak, on signals built so that the
peak sits between samples, in one short burst, on clipped plateaus, or nowhere (silence)."""
from __future__ import annotations

import numpy as np
import pyebur128 as ebur
import pytest

from backends.extractors.loudness import measure
from backends.extractors.loudness import true_peak as tp
from tests.support.dsp_signals import RATE, shaped_noise, stereo


def libebur128_true_peak(data: np.ndarray, rate: int) -> float:
    """libebur128 over the whole signal in one call: the value the module used to report."""
    state = ebur.R128State(data.shape[1], rate, ebur.MeasurementMode.MODE_TRUE_PEAK)
    state.add_frames(np.ascontiguousarray(data, dtype=np.float32).reshape(-1), data.shape[0])
    return max(ebur.get_true_peak(state, c) for c in range(data.shape[1]))


def db(linear: float) -> float:
    return 20 * np.log10(linear)


def quarter_rate_sine(seconds: float, amplitude: float) -> np.ndarray:
    """A sine at fs/4 with 45° phase: every sample is ±amplitude/√2, the crests fall halfway
    between samples, so the true peak is 3.01 dB over the sample peak."""
    n = np.arange(int(seconds * RATE))
    return stereo(amplitude * np.sin(np.pi / 2 * n + np.pi / 4))


def music_like_noise(seconds: float, seed: int, rms_dbfs: float = -24.0) -> np.ndarray:
    """Pink noise whose level swells and fades like phrases (about ±4 dB around ``rms_dbfs``)."""
    noise = shaped_noise(seconds, exponent=1.0, rms_dbfs=rms_dbfs, seed=seed)
    t = np.arange(len(noise)) / RATE
    return (noise * (0.6 + 0.4 * np.sin(2 * np.pi * t / 7.0))[:, None]).astype(np.float32)


def burst_in_quiet_music(seconds: float, at: float) -> np.ndarray:
    """Quiet music-like noise with one 20 ms quarter-rate burst (Hann envelope, so no onset
    overshoot) whose crests lie between samples: its sample peak (−6 dBFS) hides a true peak of
    −3 dBTP."""
    data = music_like_noise(seconds, seed=4, rms_dbfs=-36.0)
    burst = quarter_rate_sine(0.02, 10 ** (-3 / 20))
    burst *= np.hanning(len(burst)).astype(np.float32)[:, None]
    start = int(at * RATE)
    data[start:start + len(burst)] += burst
    return data


def clipped(seconds: float) -> np.ndarray:
    """A 2 kHz triangle-rich square driven into ±1.0: flat-topped clipped material."""
    t = np.arange(int(seconds * RATE)) / RATE
    wave = np.clip(3.0 * np.sign(np.sin(2 * np.pi * 2000 * t)) + 0.3 * np.sin(2 * np.pi * 110 * t), -1, 1)
    return stereo(wave)


SIGNALS = {
    "fs/4 sine at 45 degrees": lambda: quarter_rate_sine(5.0, 0.5),
    "burst in quiet music": lambda: burst_in_quiet_music(30.0, at=17.3),
    "burst in the first block": lambda: burst_in_quiet_music(10.0, at=0.0),
    "burst in the last frames": lambda: burst_in_quiet_music(10.0, at=10.0 - 0.02),
    "clipped square": lambda: clipped(6.0),
    "music-like noise": lambda: music_like_noise(20.0, seed=9),
    "one channel louder": lambda: music_like_noise(12.0, seed=2) * np.array([0.3, 1.7], np.float32),
}


@pytest.mark.parametrize("name", SIGNALS)
def test_pruned_true_peak_equals_libebur128_over_the_whole_signal(name):
    data = SIGNALS[name]()
    expected = libebur128_true_peak(data, RATE)
    got, stats = tp.true_peak(data, RATE)
    assert db(got) == pytest.approx(db(expected), abs=0.02)
    assert stats["interpolated"] <= stats["blocks"]


def test_inter_sample_peak_is_three_db_over_the_sample_peak():
    data = quarter_rate_sine(5.0, 0.5)
    sample_peak = float(np.max(np.abs(data)))
    got, _ = tp.true_peak(data, RATE)
    # An ideal interpolator reads +3.01 dB; libebur128's 49-tap filter has +0.1 dB of ripple at
    # fs/4 (BS.1770-4 Annex 2 allows such under-/over-reading).
    assert db(got) - db(sample_peak) == pytest.approx(3.01, abs=0.15)
    assert db(got) == pytest.approx(db(0.5), abs=0.15)


def test_an_isolated_burst_is_found_while_the_quiet_blocks_are_skipped():
    data = burst_in_quiet_music(30.0, at=17.3)
    got, stats = tp.true_peak(data, RATE)
    assert db(float(np.max(np.abs(data)))) < -5.0  # its samples stay near −6 dBFS ...
    assert db(got) == pytest.approx(-3.0, abs=0.3)  # ... the true peak is its crest
    # The burst raises the bar far above the quiet music: only blocks near it are filtered.
    assert stats["interpolated"] < 0.05 * stats["blocks"]


def test_the_pruning_bound_is_what_libebur128_reaches_on_the_worst_case_signal():
    """Samples of ±1 with the signs of the half-sample branch's taps drive libebur128's filter
    to exactly that branch's |coefficient| sum: the bound the pruning relies on is tight, so
    it is the real filter's, not a guess."""
    coeffs = tp.branches(4)
    worst = int(np.argmax(np.abs(coeffs).sum(axis=1)))
    # Output n of a branch reads x[n - t] with tap t: place the signs newest-first.
    signs = np.sign(coeffs[worst])[::-1].astype(np.float32)
    data = stereo(np.concatenate([np.zeros(100), signs, np.zeros(100)]))
    assert libebur128_true_peak(data, RATE) == pytest.approx(tp.branch_gain(4), rel=1e-6)
    assert tp.branch_gain(4) == pytest.approx(1.8642, abs=1e-4)


@pytest.mark.parametrize("rate", [48000, 96000, 192000])
def test_other_sample_rates_use_libebur128s_factor(rate):
    rng = np.random.default_rng(rate)
    data = (rng.standard_normal((rate * 3, 2)) * 0.2).astype(np.float32)
    got, _ = tp.true_peak(data, rate)
    assert db(got) == pytest.approx(db(libebur128_true_peak(data, rate)), abs=0.02)


def test_silence_has_no_true_peak_and_says_why():
    got = measure(np.zeros((RATE * 5, 2), np.float32), RATE, true_peak=True)
    assert got["true_peak_dbtp"] is None
    assert "silent" in got["true_peak_dbtp_why"]
    assert tp.true_peak(np.zeros((RATE, 2), np.float32), RATE)[0] == 0.0


def test_loudness_module_reports_the_pruned_value():
    data = burst_in_quiet_music(30.0, at=11.0)
    got = measure(data, RATE, true_peak=True)
    assert got["true_peak_dbtp"] == pytest.approx(db(libebur128_true_peak(data, RATE)), abs=0.02)
