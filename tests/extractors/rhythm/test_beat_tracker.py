"""backends/extractors/rhythm/beat_tracker.py against essentia itself: each onset detection function against
essentia's own algorithm, and the beats, tempo and confidence against RhythmExtractor2013."""
from __future__ import annotations

import numpy as np
import pytest

from backends.extractors.rhythm import beat_tracker as bt
from tests.support.rhythm_signals import RATE, click_track
from tui import demo


def song(seconds: float) -> np.ndarray:
    """A drum groove, bass line and chords at 124 BPM (the benchmark's track, shorter)."""
    rng = np.random.default_rng(11)
    mix = (demo.drums(124.0, seconds, rng) + 0.6 * demo.bassline([45, 41, 36, 43], 124.0, seconds)
           + 0.5 * demo.progression([[57, 60, 64], [53, 57, 60], [48, 52, 55], [55, 59, 62]],
                                    124.0, seconds))
    # A -60 dB noise floor, as recordings have: in digitally silent bins the phases both FFTs give
    # are rounding noise, and the complex-domain function would compare noise with noise.
    floor = 1e-3 * np.random.default_rng(5).standard_normal(len(mix))
    return (0.89 * mix / np.max(np.abs(mix)) + floor).astype(np.float32)


@pytest.fixture(scope="module")
def groove():
    # Not a whole number of hops: the 2048/1024 cutter then takes one frame more than every
    # second 2048/512 frame.
    return song(21.3)


def essentia_functions(signal: np.ndarray) -> dict[str, np.ndarray]:
    import essentia.standard as es

    out = {method: es.OnsetDetectionGlobal(method=method, sampleRate=RATE, frameSize=2048,
                                           hopSize=512)(signal)
           for method in ("beat_emphasis", "infogain")}
    window, fft, polar = es.Windowing(type="hann", size=2048), es.FFT(size=2048), es.CartesianToPolar()
    detectors = {m: es.OnsetDetection(method=m) for m in ("complex", "rms", "melflux")}
    values = {m: [] for m in detectors}
    for frame in es.FrameGenerator(signal, frameSize=2048, hopSize=1024, startFromZero=True):
        magnitude, phase = polar(fft(window(frame)))
        for m, detector in detectors.items():
            values[m].append(detector(magnitude, phase))
    out.update({m: np.array(v, np.float32) for m, v in values.items()})
    return out


def essentia_rhythm(signal: np.ndarray):
    import essentia.standard as es

    bpm, ticks, confidence, _, _ = es.RhythmExtractor2013(method="multifeature", minTempo=40,
                                                          maxTempo=208)(signal)
    return bpm, np.asarray(ticks, np.float64), float(confidence)


def test_each_onset_function_is_essentias(groove):
    ours, theirs = bt.onset_functions(groove), essentia_functions(groove)
    for name in ("complex", "rms", "melflux", "beat_emphasis", "infogain"):
        assert len(ours[name]) == len(theirs[name]), name
        scale = np.max(np.abs(theirs[name]))
        assert scale > 0, name
        # float32 FFTs in another order: a few parts in 1e5 of the function's range.
        np.testing.assert_allclose(ours[name], theirs[name], atol=1e-3 * scale, rtol=0, err_msg=name)
        # Not merely close in the large: the same shape where it is small too.
        assert np.corrcoef(ours[name], theirs[name])[0, 1] > 0.99999, name


@pytest.mark.parametrize("signal", ["groove", "groove_6s", "groove_5.3s", "noise"])
def test_beats_tempo_and_confidence_are_essentias(groove, signal):
    # 5.3 s: shorter than the beat emphasis function's longest period (~5.9 s), once an IndexError.
    audio = {"groove": groove, "groove_6s": groove[:6 * RATE + 5], "groove_5.3s": groove[:int(5.3 * RATE)],
             "noise": (np.random.default_rng(3).standard_normal(15 * RATE) * 0.1).astype(np.float32)}[signal]
    ticks, confidence = bt.MultiFeatureBeatTracker(min_tempo=40, max_tempo=208)(audio)
    bpm, expected, expected_confidence = essentia_rhythm(audio)
    assert len(ticks) == len(expected) > 4
    np.testing.assert_allclose(ticks, expected, atol=1e-4)
    assert confidence == pytest.approx(expected_confidence, abs=1e-4)
    assert bt.tempo(ticks) == pytest.approx(bpm, abs=0.01)


@pytest.mark.parametrize("bpm", [90, 128, 174])
@pytest.mark.parametrize("floor", [True, False], ids=["noise floor", "digital silence"])
def test_click_tracks_give_essentias_beats(bpm, floor):
    clicks, _ = click_track(bpm, 20.0)
    if floor:  # -70 dB, as a recording has
        clicks = clicks + (3e-4 * np.random.default_rng(bpm).standard_normal(len(clicks))).astype(np.float32)
    ticks, confidence = bt.MultiFeatureBeatTracker()(clicks)
    expected_bpm, expected, expected_confidence = essentia_rhythm(clicks)
    assert len(ticks) == len(expected)
    if floor:
        np.testing.assert_allclose(ticks, expected, atol=1e-4)
        assert confidence == pytest.approx(expected_confidence, abs=1e-4)
        assert bt.tempo(ticks) == pytest.approx(expected_bpm, abs=0.01)
    else:
        # essentia adds -100 dB noise to the digitally silent frames between the clicks, where
        # they stay silent here: a beat may land one detection frame (11.6 ms) apart.
        np.testing.assert_allclose(ticks, expected, atol=0.0117)
        assert confidence == pytest.approx(expected_confidence, abs=0.1)
        assert bt.tempo(ticks) == pytest.approx(expected_bpm, abs=0.5)


def test_the_same_tracker_gives_the_same_answer_twice_and_forgets_the_last_track(groove):
    tracker = bt.MultiFeatureBeatTracker()
    fast, _ = click_track(140, 12.0)
    first = tracker(groove)
    tracker(fast)
    again = tracker(groove)
    np.testing.assert_array_equal(first[0], again[0])
    assert first[1] == again[1]
    assert bt.tempo(tracker(fast)[0]) == pytest.approx(140, abs=1)


def test_agreement_of_identical_candidates_is_the_most_there_is():
    beats = np.arange(0.5, 30.0, 0.5, dtype=np.float32)
    ticks, confidence = bt.max_agreement([beats] * 5)
    np.testing.assert_array_equal(ticks, beats)
    assert confidence == pytest.approx(5.0)
    # A constant offset is still agreement (the measure is the spread of the errors, not their
    # size), but a candidate whose beats wander lowers it and is not the one chosen.
    _, shifted = bt.max_agreement([beats] * 4 + [beats + 0.25])
    assert shifted == pytest.approx(5.0)
    wander = np.sort(beats + np.random.default_rng(1).uniform(-0.12, 0.12, len(beats))).astype(np.float32)
    ticks, lower = bt.max_agreement([wander] + [beats] * 4)
    assert lower < 4.5
    np.testing.assert_array_equal(ticks, beats)


@pytest.mark.parametrize("samples", [1, 2047, 2048, 2049, 3000, 44100 * 5 + 3])
def test_frame_counts_are_essentias(samples):
    import essentia.standard as es

    signal = np.ones(samples, np.float32)
    for hop in (512, 1024):
        expected = sum(1 for _ in es.FrameGenerator(signal, frameSize=2048, hopSize=hop,
                                                    startFromZero=True))
        assert bt.frame_count(samples, hop) == expected, (samples, hop)
