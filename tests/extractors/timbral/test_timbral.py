"""The timbral backend through the real engine: each of the eight outputs moves the way the
construction of the signal says it must, and the accelerated backend gives exactly the numbers of
the unmodified package called on the file path."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import signal

from tests.support.helpers import events_named, info_of, run_engine, write_track
from tests.support.rhythm_signals import RATE, click, place, stereo
from tui.paths import ROOT

SECONDS = 6.0
KEYS = ("brightness", "roughness", "hardness", "depth", "booming", "reverberation", "sharpness", "warmth")

pytestmark = pytest.mark.slow


def _t() -> np.ndarray:
    return np.arange(int(SECONDS * RATE)) / RATE


def _level(x: np.ndarray, peak: float = 0.5) -> np.ndarray:
    return (x * peak / np.max(np.abs(x))).astype(np.float32)


def _noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(int(SECONDS * RATE))


def signals() -> dict[str, np.ndarray]:
    t = _t()
    white = _noise(1)
    dark = signal.sosfilt(signal.butter(4, 300, "lowpass", fs=RATE, output="sos"), _noise(2))
    low = np.sin(2 * np.pi * 55 * t) + 0.7 * np.sin(2 * np.pi * 82.5 * t)
    high = np.sin(2 * np.pi * 3000 * t)
    pure = np.sin(2 * np.pi * 440 * t)
    beating = pure + np.sin(2 * np.pi * 470 * t)  # 30 Hz beats: the roughest rate
    hits = np.arange(0.25, SECONDS - 0.5, 0.5)
    # Struck tones over a faint noise floor (pure clicks in digital silence crash the package's
    # warmth model: it slices zero-length segments between onsets).
    dry = place(hits, click(freq=1200, decay_s=0.03), SECONDS) + 1e-3 * _noise(4)
    # The same hits through a room: exponentially decaying noise with a 2.5 s RT60.
    tail_t = np.arange(int(2.5 * RATE)) / RATE
    room = np.random.default_rng(5).standard_normal(len(tail_t)) * 10 ** (-3 * tail_t / 2.5)
    room[0] = 30.0  # the direct sound
    wet = signal.fftconvolve(dry, room)[: len(dry)]
    swell_env = np.sin(np.pi * (t % 1.0)) ** 2  # one slow rise and fall per second
    swells = swell_env * np.sin(2 * np.pi * 660 * t)
    return {name: _level(x) for name, x in {
        "white": white, "dark": dark, "low": low, "high": high, "pure": pure, "beating": beating,
        "dry": dry, "wet": wet, "swells": swells}.items()}


@pytest.fixture(scope="module")
def timbral_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("timbral") / "dataset"
    for name, mono in signals().items():
        write_track(root, name, stereo(mono))
    write_track(root, "silent", np.zeros((int(SECONDS * RATE), 2), np.float32))
    write_track(root, "blip", stereo(_level(np.sin(2 * np.pi * 440 * np.arange(RATE // 4) / RATE))))
    events, _ = run_engine(root, only=["timbral"])
    return root, events


def test_every_output_is_written_unclamped(timbral_dataset):
    root, _ = timbral_dataset
    info = info_of(root / "white")
    assert set(KEYS) <= set(info)
    assert all(isinstance(info[k], float) for k in KEYS)


@pytest.mark.parametrize("key, more, less", [
    ("brightness", "white", "dark"),
    ("sharpness", "white", "dark"),
    ("depth", "low", "high"),
    ("booming", "low", "high"),
    ("warmth", "low", "white"),
    ("roughness", "beating", "pure"),
    ("hardness", "dry", "swells"),
    ("reverberation", "wet", "dry"),
])
def test_each_output_follows_the_construction(timbral_dataset, key, more, less):
    root, _ = timbral_dataset
    assert info_of(root / more)[key] > info_of(root / less)[key] + 5.0


def test_reverberation_is_a_probability_not_a_decision(timbral_dataset):
    root, _ = timbral_dataset
    values = [info_of(root / name)["reverberation"] for name in ("dry", "wet", "white", "low")]
    assert all(0.0 <= v <= 100.0 for v in values)
    assert any(v not in (0.0, 100.0) for v in values)


def test_silence_and_too_short_audio_are_bad_input(timbral_dataset):
    root, events = timbral_dataset
    failed = {e.track: e for e in events_named(events, "module_failed")}
    silent = next(e for t, e in failed.items() if t.endswith("silent"))
    assert silent.kind == "bad_input" and "all zeros" in silent.message
    blip = next(e for t, e in failed.items() if t.endswith("blip"))
    assert blip.kind == "bad_input" and "too short" in blip.message and "full_mix.flac" in blip.message


BASELINE = """
import json, sys
from backends.extractors.timbral import compat as timbral_compat
package = timbral_compat.load()  # compatibility only: the package's own code paths
path = sys.argv[1]
out = {n: float(getattr(package, "timbral_" + n)(path)) for n in
       ("brightness", "roughness", "hardness", "depth", "booming", "sharpness", "warmth")}
out["reverberation"] = float(package.timbral_reverb(path, dev_output=True)[1]) * 100
print(json.dumps(out))
"""


@pytest.mark.parametrize("name", ["dry", "beating"])
def test_accelerated_backend_matches_the_package_on_the_file(timbral_dataset, name):
    root, _ = timbral_dataset
    proc = subprocess.run([sys.executable, "-c", BASELINE, str(root / name / "full_mix.flac")],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    expected = json.loads(proc.stdout.strip().splitlines()[-1])
    got = info_of(root / name)
    for key in KEYS:
        assert got[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-9), key


@pytest.mark.parametrize("settings", [
    # hardness's call: 4096-sample frames every 128 samples, -75 dB rolloff, no normalisation
    {"nperseg": 4096, "overlap_step": 128, "rolloff_thresh": 10 ** (-75 / 20),
     "normalisation_method": "none"},
    {},  # the package's defaults: 512/32, normalised by the largest frame RMS
])
def test_blockwise_bandwidth_array_is_the_package_function(monkeypatch, settings):
    """hardness's spectrogram in blocks, its loop vectorised: bit-identical bandwidths and times."""
    from backends.extractors.timbral import compat as timbral_compat
    from backends.extractors.timbral import speedups as timbral_speedups

    package = timbral_compat.load()
    original = package.timbral_util.get_bandwidth_array
    original = getattr(original, "__wrapped__", original)
    monkeypatch.setattr(timbral_speedups, "BANDWIDTH_BLOCK_FRAMES", 700)  # several blocks
    blockwise = timbral_speedups._blockwise_bandwidth_array(original)
    t = _t()  # 6 s: 2,035 frames of hardness's settings, 8,254 of the defaults
    # Decaying noise bursts over a tone, with a stretch of digital silence (frames below the
    # quiet-frame level and frames without a rolloff bin take the package's zero branches).
    audio = (_noise(9) * np.exp(-((t % 1.0) / 0.2)) + 0.3 * np.sin(2 * np.pi * 220 * t))
    audio[int(2.2 * RATE):int(3.1 * RATE)] = 0.0
    expected, got = original(audio, RATE, **settings), blockwise(audio, RATE, **settings)
    assert len(got[0]) == len(expected[0])
    assert got[0] == list(expected[0])
    assert sum(1 for v in expected[0] if v == 0) > 10 and sum(1 for v in expected[0] if v) > 100
    assert np.array_equal(got[1], expected[1]) and np.array_equal(got[2], expected[2])


def test_hpss_with_sliding_medians_is_librosas():
    """The package's harmonic/percussive split: the same spectra as librosa.decompose.hpss."""
    import librosa

    from backends.extractors.timbral import speedups as timbral_speedups

    t = _t()
    audio = 0.3 * np.sin(2 * np.pi * 220 * t) + _noise(3) * np.exp(-((t % 0.5) / 0.05))
    audio[: RATE // 2] = 0.0  # digital silence: zero magnitudes take softmask's split branch
    spectrum = librosa.stft(audio)
    expected = librosa.decompose.hpss(spectrum)
    # librosa's Fortran-ordered STFT, and a C-ordered copy (the kernel's other layout)
    for given in (spectrum, np.ascontiguousarray(spectrum)):
        got = timbral_speedups._fast_hpss()(given)
        for e, g in zip(expected, got):
            assert g.dtype == e.dtype and np.array_equal(g, e)


@pytest.mark.parametrize("shape", [(40, 300), (300, 40), (5, 17)])
def test_sliding_median_is_scipys_median_filter(shape):
    from scipy.ndimage import median_filter

    from backends.extractors.timbral.sliding_median import median_filter_1d

    rng = np.random.default_rng(7)
    x = np.abs(rng.standard_normal(shape))
    x[:, ::4] = 0.5  # ties
    x[1] = 0.0
    for axis, footprint in ((1, (1, 31)), (0, (31, 1))):
        for given in (x, np.asfortranarray(x)):  # librosa's spectra are Fortran-ordered
            got = median_filter_1d(given, 31, axis)
            if x.shape[axis] <= 15:
                assert got is None  # too short for one reflection: scipy's job
            else:
                assert np.array_equal(got, median_filter(x, size=footprint, mode="reflect"))
    x[2, 3] = np.nan
    assert median_filter_1d(x, 31, 1) is None


@pytest.mark.parametrize("name", ["dry", "wet", "white", "swells"])
def test_vectorised_rt60_estimate_is_the_packages(name):
    """reverberation's blind RT60 estimate, frame statistics in blocks: the same number."""
    from backends.extractors.timbral import compat as timbral_compat
    from backends.extractors.timbral import reverb_frames as timbral_reverb_frames

    package = timbral_compat.load()
    reverb = package.Timbral_Reverb
    original = getattr(reverb.estimate_RT60, "__wrapped__", reverb.estimate_RT60)
    audio = signals()[name].astype(np.float64)
    stereo_audio = np.stack([audio, np.roll(audio, 3) * 0.5], axis=1)
    fast = timbral_reverb_frames.estimate_rt60(reverb)
    for channel in (stereo_audio[:, 0], stereo_audio[:, 1]):  # strided views, as the package passes
        assert fast(channel, RATE) == original(channel, RATE)


@pytest.mark.parametrize("name", ["beating", "pure", "white", "dry"])
def test_blockwise_roughness_is_the_packages(monkeypatch, name):
    """roughness with its spectrogram in blocks (several here): the same value."""
    from backends.extractors.timbral import compat as timbral_compat
    from backends.extractors.timbral import roughness_blocks as timbral_roughness_blocks

    package = timbral_compat.load()
    original = getattr(package.Timbral_Roughness.timbral_roughness, "__wrapped__",
                       package.Timbral_Roughness.timbral_roughness)
    monkeypatch.setattr(timbral_roughness_blocks, "FRAMES_PER_BLOCK", 50)
    fast = timbral_roughness_blocks.roughness(package)
    audio = np.stack([signals()[name].astype(np.float64)] * 2, axis=1)
    expected = original(audio.copy(), fs=RATE)
    if name != "pure":  # a lone sine has no peak pairs: the model's floor, 0
        assert expected != 0
    assert fast(audio.copy(), fs=RATE) == expected


@pytest.mark.parametrize("length", [int(SECONDS * RATE), int(SECONDS * RATE) - 511])
def test_blockwise_onset_strength_is_librosas(monkeypatch, length):
    """Onset envelopes from a mel spectrogram made in blocks agree with librosa's to the rounding
    of the mel matrix product (BLAS sums a block in another order than the whole): a few units in
    the last place of the powers, 1e-12 relative of the envelope at most."""
    import librosa

    from backends.extractors.timbral import onset_blocks

    monkeypatch.setattr(onset_blocks, "FRAMES_PER_BLOCK", 100)
    t = _t()[:length]
    audio = 0.3 * np.sin(2 * np.pi * 220 * t) + _noise(5)[:length] * np.exp(-((t % 0.5) / 0.05))
    expected = librosa.feature.melspectrogram(y=audio, sr=RATE, fmax=RATE / 2)
    got = onset_blocks.mel_power(audio, RATE)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-14, atol=0)
    np.testing.assert_allclose(onset_blocks.onset_strength(audio, RATE),
                               librosa.onset.onset_strength(y=audio, sr=RATE), rtol=1e-12, atol=1e-14)


def test_segmented_percussive_ratio_is_the_packages(monkeypatch):
    """hardness's harmonic/percussive ratio made segment by segment: the package's ratio."""
    from backends.extractors.timbral import compat as timbral_compat
    from backends.extractors.timbral import hpss_segments as timbral_hpss_segments
    from backends.extractors.timbral import speedups as timbral_speedups

    package = timbral_compat.load()
    timbral_speedups.install(package)
    util = package.timbral_util
    original = getattr(util.get_percussive_audio, "__wrapped__", util.get_percussive_audio)
    monkeypatch.setattr(timbral_hpss_segments, "SEGMENT_FRAMES", 100)  # 6 s: five segments
    segmented = timbral_hpss_segments.percussive_ratio(util)
    t = _t()
    audio = 0.3 * np.sin(2 * np.pi * 220 * t) + _noise(3) * np.exp(-((t % 0.5) / 0.05))
    audio[: RATE // 2] = 0.0
    expected = original(audio)
    assert 0.05 < expected < 0.95
    assert segmented(audio) == pytest.approx(expected, rel=1e-12, abs=0)


def test_blockwise_spectrogram_is_scipys(monkeypatch):
    """brightness's and depth's spectrogram call, in blocks: scipy's arrays exactly."""
    from scipy.signal import spectrogram

    from backends.extractors.timbral import spectrogram_blocks

    monkeypatch.setattr(spectrogram_blocks, "FRAMES_PER_BLOCK", 37)  # 255 frames: seven blocks
    audio = _noise(11) * np.exp(-((_t() % 1.0) / 0.3))
    args = (RATE, "hamming", 4096, 3072, 4096, "constant", True, "spectrum")  # the package's
    for e, g in zip(spectrogram(audio, *args), spectrogram_blocks.spectrogram(audio, *args)):
        assert np.array_equal(g, e)
    # Laid out as scipy's: depth's sums over frames add in the same order.
    e, g = spectrogram(audio, *args)[2], spectrogram_blocks.spectrogram(audio, *args)[2]
    assert np.array_equal(np.sum(g, axis=1), np.sum(e, axis=1))


@pytest.mark.parametrize("nperseg", [4096, 2048])  # depth's frames, brightness's
def test_column_spectrogram_reads_as_scipys(monkeypatch, nperseg):
    """The spectrogram the two loops walk column by column: scipy's columns, their sums, and
    the whole array wherever it is used as one."""
    from scipy.signal import spectrogram

    from backends.extractors.timbral import spectrogram_columns

    monkeypatch.setattr(spectrogram_columns, "FRAMES_PER_BLOCK", 37)
    audio = _noise(12) * np.exp(-((_t() % 1.0) / 0.3))
    args = (RATE, "hamming", nperseg, nperseg * 3 // 4, nperseg, "constant", True, "spectrum")
    f, t, expected = spectrogram(audio, *args)
    f2, t2, got = spectrogram_columns.spectrogram(audio, *args)
    assert isinstance(got, spectrogram_columns.ColumnSpectrogram)
    assert np.array_equal(f2, f) and np.array_equal(t2, t) and got.shape == expected.shape
    for idx in [*range(expected.shape[1]), 3, -1]:  # in order, then back and from the end
        column = got[:, idx]
        assert np.array_equal(column, expected[:, idx])
        assert np.sum(column) == np.sum(expected[:, idx])
    assert np.array_equal(np.sum(got, axis=1), np.sum(expected, axis=1))
    assert np.array_equal(got[10:20, 5:9], expected[10:20, 5:9])
    assert np.array_equal(np.asarray(got), expected)


@pytest.mark.parametrize("name, signal_name", [("brightness", "white"), ("brightness", "dry"),
                                               ("depth", "low"), ("depth", "dry")])
def test_column_spectrograms_give_the_packages_brightness_and_depth(monkeypatch, name, signal_name):
    """The package's own brightness and depth, walking block-made columns: the same features."""
    from scipy.signal import spectrogram

    from backends.extractors.timbral import compat as timbral_compat
    from backends.extractors.timbral import spectrogram_columns

    package = timbral_compat.load()
    module = getattr(package, f"Timbral_{name.capitalize()}")
    function = getattr(module, f"timbral_{name}")
    monkeypatch.setattr(spectrogram_columns, "FRAMES_PER_BLOCK", 50)  # several blocks
    audio = np.stack([signals()[signal_name].astype(np.float64)] * 2, axis=1)
    monkeypatch.setattr(module, "spectrogram", spectrogram)
    expected = function(audio.copy(), fs=RATE), function(audio.copy(), fs=RATE, dev_output=True)
    monkeypatch.setattr(module, "spectrogram", spectrogram_columns.spectrogram)
    got = function(audio.copy(), fs=RATE), function(audio.copy(), fs=RATE, dev_output=True)
    assert got[0] == expected[0] and tuple(got[1]) == tuple(expected[1])


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_mono_sum_in_blocks_is_the_packages(monkeypatch, channels):
    """The worker's mono float64 track: the package's channel reduction of the float64 read."""
    from backends.extractors.timbral import compat as timbral_compat
    from backends.extractors.timbral import speedups as timbral_speedups

    util = timbral_compat.load().timbral_util
    monkeypatch.setattr(timbral_speedups, "MONO_BLOCK_FRAMES", 1000)
    rng = np.random.default_rng(13)
    pcm = (rng.standard_normal((10_500, channels)) * 0.3).astype(np.float32)
    pcm[:50] = -0.0
    read = pcm.astype(np.float64)  # what soundfile.read gives the package
    expected = read[:, 0] if channels == 1 else util.channel_reduction(read)
    got = timbral_speedups.mono_float64(pcm, util)
    assert got.dtype == np.float64 and got.shape == expected.shape
    assert np.array_equal(got, expected) and np.array_equal(np.signbit(got), np.signbit(expected))
