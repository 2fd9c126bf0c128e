"""The rhythm backend through the real engine, on signals whose beats and onsets are known."""
from __future__ import annotations

import numpy as np
import pytest

from backends.extractors.rhythm import measures as rm
from tests.support.helpers import events_named, info_of, run_engine, write_track
from tests.support.rhythm_signals import RATE, beat_times, click, click_track, place, stereo

TEMPI = (90.0, 128.0, 174.0)
SECONDS = 30.0


def read_times(path) -> np.ndarray:
    return np.array([float(line) for line in path.read_text().split()])


def distance_to_nearest(times: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.array([np.min(np.abs(reference - t)) for t in times])


@pytest.fixture(scope="module")
def click_dataset(tmp_path_factory):
    """Click tracks at 90, 128 and 174 BPM, an off-beat track with stems, noise, too-short and
    all-zero audio, run once through the engine."""
    root = tmp_path_factory.mktemp("rhythm") / "dataset"
    for bpm in TEMPI:
        mono, _ = click_track(bpm, SECONDS)
        write_track(root, f"Clicks {bpm:g} BPM", stereo(mono))
    # 120 BPM: a low and a high click together on each beat (kick and hat), a quieter high click
    # alone halfway between (the "and").
    on = beat_times(120, 20.0)
    off = on + 0.25
    on_beat = place(on, click(freq=400, decay_s=0.004, amplitude=0.8), 20.0)
    hat = click(freq=3000, amplitude=0.4)
    off_beat = place(off, 0.6 * hat, 20.0)
    write_track(root, "Offbeat, \"quoted\" ünïcode", stereo(on_beat + place(on, hat, 20.0) + off_beat),
                stems={"bass": stereo(on_beat), "drums": stereo(off_beat),
                       "other": np.zeros((len(on_beat), 2), np.float32)})
    straight = place(on, click(freq=400, decay_s=0.004, amplitude=0.8), 20.0)
    write_track(root, "Straight", stereo(straight), stems={"drums": stereo(straight)})
    noise = np.random.default_rng(3).standard_normal((int(20 * RATE), 2)).astype(np.float32) * 0.1
    write_track(root, "White Noise", noise)
    write_track(root, "Too Short", stereo(click_track(120, 2.0)[0]))
    write_track(root, "Digital Silence", np.zeros((10 * RATE, 2), np.float32))
    events, stats = run_engine(root, only=["rhythm"])
    return root, events, stats


@pytest.mark.parametrize("bpm", TEMPI)
def test_click_track_tempo_and_beat_times(click_dataset, bpm):
    root, _, _ = click_dataset
    folder = root / f"Clicks {bpm:g} BPM"
    info = info_of(folder)
    assert info["bpm_is_defined"] == 1
    assert info["bpm"] == pytest.approx(bpm, abs=1.0)
    truth = beat_times(bpm, SECONDS)
    beats = read_times(folder / f"{folder.name}.BEATS_GRID")
    assert info["beat_count"] == len(beats)
    # Every click after the tracker's first second is found by a beat within 20 ms ...
    settled = truth[truth > truth[0] + 1.0]
    assert np.all(distance_to_nearest(settled, beats) <= 0.020)
    # ... and no beat after that first second is more than 20 ms from a click.
    assert np.all(distance_to_nearest(beats[beats > truth[0] + 1.0], truth) <= 0.020)
    assert info["beat_regularity"] < 0.02  # the first, unsettled beat included
    onsets = read_times(folder / f"{folder.name}.ONSETS")
    assert info["onset_count"] == len(onsets) == len(truth)
    assert np.all(distance_to_nearest(onsets, truth) <= 0.015)  # 11.6 ms frames
    assert info["onset_density"] == pytest.approx(len(truth) / SECONDS, rel=1e-6)
    assert info["ioi_mean"] == pytest.approx(60.0 / bpm, abs=0.006)
    assert info["rhythmic_complexity"] < 0.15  # one IOI class (quantised to 5.8 ms frames)
    assert info["rhythmic_evenness"] > 0.97
    assert info["syncopation"] < 0.05
    assert info["on_beat_ratio"] > 0.95  # a click before the tracker's first beat may miss it
    assert not (folder / f"{folder.name}.DOWNBEATS").exists()  # essentia gives no downbeats


def test_off_beat_clicks_raise_syncopation(click_dataset):
    root, _, _ = click_dataset
    offbeat = info_of(root / "Offbeat, \"quoted\" ünïcode")
    straight = info_of(root / "Straight")
    assert offbeat["bpm"] == pytest.approx(120, abs=1.0)
    assert straight["syncopation"] < 0.05 and straight["on_beat_ratio"] > 0.95
    # Half of the onsets fall off the beat, carrying part of the strength.
    assert offbeat["on_beat_ratio"] == pytest.approx(0.5, abs=0.05)
    assert 0.2 < offbeat["syncopation"] < 0.8
    # The stems against the mix's beat grid: bass is on it, drums entirely off it.
    assert offbeat["syncopation_bass"] < 0.05
    assert offbeat["syncopation_drums"] > 0.95
    # 2 onsets per second on each of bass and drums, steady, so no variance between windows.
    for stem in ("bass", "drums"):
        assert offbeat[f"onset_density_average_{stem}"] == pytest.approx(2.0, abs=0.15)
        assert offbeat[f"onset_density_variance_{stem}"] < 0.05
        assert offbeat[f"rhythmic_evenness_{stem}"] > 0.97
    # A silent stem has no onsets: density 0, and measures of intervals are undefined (null).
    assert offbeat["onset_density_average_other"] == 0.0
    assert offbeat["syncopation_other"] is None
    assert offbeat["rhythmic_complexity_other"] is None
    # A track with only a drums stem gets drums keys only; nothing is invented for missing stems.
    assert "syncopation_drums" in straight and "syncopation_bass" not in straight
    assert not any(k.endswith("_other") for k in straight)


def test_noise_has_no_tempo(click_dataset):
    root, _, _ = click_dataset
    info = info_of(root / "White Noise")
    assert info["bpm"] is None and info["bpm_is_defined"] == 0
    assert info["beat_confidence"] < 1.5
    assert info["syncopation"] is None and info["on_beat_ratio"] is None
    assert "no clear pulse" in info["_mirdeck"]["rhythm"]["notes"]["bpm"]


def test_too_short_and_silent_audio_are_bad_input(click_dataset):
    root, events, _ = click_dataset
    failed = {e.track: e for e in events_named(events, "module_failed")} or \
             {e.track: e for e in events if type(e).__name__ == "ModuleFailed"}
    short = next(e for t, e in failed.items() if "Too Short" in t)
    assert short.kind == "bad_input" and "too short" in short.message and "full_mix.flac" in short.message
    silent = next(e for t, e in failed.items() if "Digital Silence" in t)
    assert silent.kind == "bad_input" and "all zeros" in silent.message
    for name in ("Too Short", "Digital Silence"):
        info_path = root / name / f"{name}.INFO"
        features = info_of(root / name) if info_path.exists() else {}
        assert "bpm" not in features and "onset_count" not in features
        assert not (root / name / f"{name}.BEATS_GRID").exists()


# -- the measures on exactly known times ---------------------------------------------------

def test_syncopation_is_the_strength_share_off_the_beat():
    beats = np.arange(0.0, 10.0, 0.5)
    onsets = np.sort(np.concatenate([beats, beats + 0.25]))
    strengths = np.where(np.isin(onsets, beats), 3.0, 1.0)
    assert rm.syncopation(onsets, strengths, beats) == pytest.approx(0.25)
    assert rm.on_beat_ratio(onsets, beats) == pytest.approx(0.5)
    assert rm.syncopation(onsets, strengths, beats[:3]) is None  # too few beats: no grid


def test_interval_measures_on_known_onsets():
    even = np.arange(0.0, 10.0, 0.25)
    assert rm.rhythmic_complexity(even) == pytest.approx(0.0)
    assert rm.rhythmic_evenness(even) == pytest.approx(1.0)
    assert rm.ioi_stats(even) == pytest.approx((0.25, 0.0))
    # Alternating 0.1 s / 0.4 s intervals: two equally likely IOI classes (1 bit of 42 bins).
    swung = np.cumsum(np.tile([0.1, 0.4], 20))
    assert rm.rhythmic_complexity(swung) == pytest.approx(1.0 / np.log2(42), abs=1e-3)
    assert rm.rhythmic_evenness(swung) == pytest.approx(1.0 / (1.0 + 0.15 / 0.25), abs=0.01)
    assert rm.rhythmic_complexity(np.array([1.0, 2.0])) is None


def test_onset_density_windows():
    # 1 onset/s for 10 s then 3/s for 10 s: windows at 0,2,...,16 s.
    onsets = np.concatenate([np.arange(0.0, 10.0, 1.0), np.arange(10.0, 20.0, 1 / 3)])
    density = rm.windowed_onset_density(onsets, 20.0)
    assert len(density) == 9
    assert density[0] == pytest.approx(1.0) and density[-1] == pytest.approx(3.0)


def test_half_tempo_answer_is_doubled_only_when_the_onsets_show_it():
    beats = np.arange(0.0, 20.0, 0.69)
    mids = beats[:-1] + 0.345
    onsets = np.sort(np.concatenate([beats, mids]))
    assert rm.doubled_pulse(beats, onsets, np.ones(len(onsets)))
    weak = np.where(np.isin(onsets, beats), 1.0, 0.3)
    assert not rm.doubled_pulse(beats, onsets, weak)
    assert not rm.doubled_pulse(beats, beats, np.ones(len(beats)))


# --- tempo from the sections with a pulse ------------------------------------------------------

def test_a_steady_groove_between_an_ambient_intro_and_outro_gets_its_tempo(tmp_path):
    """90 s of pad, 150 s of drums at 135 BPM, 60 s of pad fading out: the whole-track tracker
    confidence is under the gate (0.99 here), but anyone would tap 135 BPM along the middle."""
    from tests.support.rhythm_signals import ambient_intro_groove_outro, pad

    root = tmp_path / "ds"
    write_track(root, "Ambient Groove", stereo(ambient_intro_groove_outro(135.0, 90.0, 150.0, 60.0)))
    write_track(root, "Pad Only", stereo(pad(60.0)))
    run_engine(root, only=["rhythm"])
    info = info_of(root / "Ambient Groove")
    assert info["bpm_is_defined"] == 1 and info["bpm"] == pytest.approx(135.0, abs=1.0)
    assert info["beat_confidence"] >= 1.5 and info["syncopation"] is not None
    pulse = info["_mirdeck"]["rhythm"]["pulse"]
    assert pulse["whole_track_confidence"] < 1.5
    assert pulse["share"] == pytest.approx(150 / 300, abs=0.1)
    (start, end), = pulse["sections_s"]
    assert start == pytest.approx(90.0, abs=15.0) and end == pytest.approx(240.0, abs=15.0)
    beats = read_times(root / "Ambient Groove" / "Ambient Groove.BEATS_GRID")
    assert beats.min() >= start and beats.max() < end  # no grid over the pad
    # No pulse anywhere stays null.
    pad_only = info_of(root / "Pad Only")
    assert pad_only["bpm"] is None and pad_only["_mirdeck"]["rhythm"]["pulse"]["share"] == 0.0


# --- snapping beats to onsets ------------------------------------------------------------------

def _grid_for(times: np.ndarray, seconds: float) -> np.ndarray:
    import soxr

    from backends.extractors.rhythm.beat_tracker import MultiFeatureBeatTracker
    from backends.extractors.rhythm.onsets import ONSET_RATE, detect_onsets

    audio = place(times, click(freq=400, decay_s=0.004, amplitude=0.6), seconds)
    audio += (3e-4 * np.random.default_rng(1).standard_normal(len(audio))).astype(np.float32)
    ticks, _ = MultiFeatureBeatTracker()(audio)
    onsets, strengths = detect_onsets(soxr.resample(audio, RATE, ONSET_RATE).astype(np.float32))
    return rm.snap_beats(np.asarray(ticks, np.float64), onsets, strengths)


def _jitter_ms(grid: np.ndarray, truth: np.ndarray, seconds: float) -> float:
    """RMS of each true beat's distance to its grid beat, after the mean offset (the detector's
    lag) is taken off: how unevenly the grid follows the beats."""
    inner = truth[(truth > 6.0) & (truth < seconds - 2.0)]
    error = np.array([grid[np.argmin(np.abs(grid - t))] - t for t in inner])
    return 1000 * float(np.sqrt(np.mean((error - error.mean()) ** 2)))


@pytest.mark.parametrize("bpm", [97.0, 128.0])
def test_beats_played_to_a_clock_get_an_even_grid(bpm):
    """Per-beat snapping put each beat on the onset detector's 11.6 ms frames (3.4 ms RMS jitter
    on exact clicks); a grid fitted through the attacks has almost none."""
    seconds = 40.0
    truth = beat_times(bpm, seconds)
    assert _jitter_ms(_grid_for(truth, seconds), truth, seconds) < 1.5


def test_beats_played_by_hand_keep_their_own_onsets():
    """12 ms of human timing: a straight line would be ~12 ms off; each beat follows its click.
    (A seed whose every beat lies within the tracker's snap reach: one that does not stays where
    the tracker put it, with or without this rule.)"""
    from tests.support.rhythm_signals import humanised_beats

    seconds = 40.0
    truth = humanised_beats(128.0, seconds, 0.012, seed=1)
    assert _jitter_ms(_grid_for(truth, seconds), truth, seconds) < 4.5


def test_a_run_with_a_beat_on_another_instrument_stays_on_the_line():
    """One beat in a steady run snapped 30 ms late (a louder hat): the line through the others holds."""
    beats = 0.5 + np.arange(16) * 0.46875
    onsets = beats.copy()
    onsets[7] += 0.030
    snapped = rm.snap_beats(beats - 0.02, onsets, np.ones(len(onsets)))
    np.testing.assert_allclose(snapped, beats, atol=1e-6)
