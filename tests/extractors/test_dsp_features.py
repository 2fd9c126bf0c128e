"""loudness, spectral, multiband_rms, chroma and harmonic through the real engine, on signals whose
answers are known by construction. One engine run over one dataset serves every test here."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support import dsp_signals as sig
from tests.support.helpers import events_named, info_of, run_engine, write_track

MODULES = ["loudness", "spectral", "multiband_rms", "chroma", "harmonic"]
BANDS = {"bass": (30, 110), "body": (150, 550), "mid": (700, 2300), "air": (3000, 20000)}
CHROMA_KEYS = [f"chroma_{i}" for i in range(12)]
HARMONIC_BLOCK = 11 * 4096  # the harmonic module's window length: one chord per window


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dsp") / "dataset"
    tracks = {
        "Sine −23 LUFS": sig.sine(1000, 20, -23.0),
        "White Noise": sig.shaped_noise(10, exponent=0.0, rms_dbfs=-20),
        "Pink Noise": sig.shaped_noise(10, exponent=1.0, rms_dbfs=-20),
        "Sine 1 kHz": sig.sine(1000, 10, -6.0),
        "Progression, A minor": sig.progression(sig.A_MINOR_CHORDS, sig.A_MINOR_ROOTS, 24),
        "Progression, E♭ major": sig.progression(sig.E_FLAT_MAJOR_CHORDS, sig.E_FLAT_MAJOR_ROOTS, 24),
        "Silence": np.zeros((10 * sig.RATE, 2), dtype=np.float32),
        "Too Short": sig.sine(1000, 0.03, -6.0),
    }
    for band, edges in BANDS.items():
        tracks[f"Band {band}"] = sig.shaped_noise(10, band=edges, rms_dbfs=-20, seed=len(tracks))
    folders = {name: write_track(root, name, data) for name, data in tracks.items()}

    # Stems: "other" a 1 kHz sine at −30 LUFS, "bass" digital silence, no drums, no vocals.
    folders["Stems, Some Missing"] = write_track(
        root, "Stems, Some Missing", sig.sine(1000, 12, -20.0),
        stems={"other": sig.sine(1000, 12, -30.0), "bass": np.zeros((12 * sig.RATE, 2), np.float32)})
    # Harmony: a held chord against chords that change every window (no shared pitch class).
    static = sig.chord_blocks([[48, 52, 55]], HARMONIC_BLOCK, 16)
    moving = sig.chord_blocks([[48, 52, 55], [54, 58, 61]], HARMONIC_BLOCK, 16)
    folders["Harmony"] = write_track(root, "Harmony", static + moving,
                                     stems={"bass": static, "other": moving})
    # A mono stem under a stereo mix was not cut from that mix.
    folders["Mono Stem"] = write_track(root, "Mono Stem", sig.sine(440, 5, -10.0),
                                       stems={"bass": sig.sine(110, 5, -10.0)[:, 0]})
    events, _ = run_engine(root, only=MODULES)
    return folders, events


def info(run, name):
    return info_of(run[0][name])


def notes(run, name, module):
    return info(run, name)["_mirdeck"][module].get("notes", {})


def failures(run, name):
    folder = str(run[0][name])
    return {e.module: e for e in events_named(run[1], "module_failed") if e.track.startswith(folder) or
            name in e.track}


# --- loudness --------------------------------------------------------------------------------

def test_sine_at_minus_23_lufs_measures_minus_23(run):
    got = info(run, "Sine −23 LUFS")
    assert got["lufs"] == pytest.approx(-23.0, abs=0.1)
    # A steady tone has (almost) no loudness range; its true peak is its sample peak, −23 dBFS.
    assert got["lra"] == pytest.approx(0.0, abs=0.5)
    assert got["true_peak_dbtp"] == pytest.approx(-23.0, abs=0.1)


def test_stem_loudness_only_for_present_stems_and_null_for_a_silent_one(run):
    got = info(run, "Stems, Some Missing")
    assert got["lufs"] == pytest.approx(-20.0, abs=0.1)
    assert got["lufs_other"] == pytest.approx(-30.0, abs=0.1)
    # The silent bass stem exists, so its keys are written, as null with a reason.
    assert got["lufs_bass"] is None and got["lra_bass"] is None
    assert "silent" in notes(run, "Stems, Some Missing", "loudness")["lufs_bass"]
    # Missing stems get no key at all (the older tool wrote zeros).
    for key in ("lufs_drums", "lra_drums", "lufs_vocals", "lra_vocals"):
        assert key not in got


def test_silence_is_null_with_reasons_in_every_module(run):
    got = info(run, "Silence")
    null_keys = ["lufs", "lra", "true_peak_dbtp", "spectral_flatness", "spectral_flux", "spectral_skewness",
                 "spectral_kurtosis", "rms_energy_bass", "rms_energy_body", "rms_energy_mid", "rms_energy_air",
                 *CHROMA_KEYS, "key", "scale", "key_strength"]
    for key in null_keys:
        assert key in got and got[key] is None, key
    written = {k for module in ("loudness", "spectral", "multiband_rms", "chroma")
               for k in notes(run, "Silence", module)}
    assert set(null_keys) <= written


def test_mono_stem_under_stereo_mix_is_bad_input_naming_the_stem(run):
    failed = failures(run, "Mono Stem")
    assert failed["loudness"].kind == "bad_input"
    assert "bass.flac" in failed["loudness"].message and "channel" in failed["loudness"].message
    assert "lufs" not in info(run, "Mono Stem")


def test_too_short_audio_is_bad_input_and_writes_nothing(run):
    failed = failures(run, "Too Short")
    for module in ("loudness", "spectral", "multiband_rms", "chroma"):
        assert failed[module].kind == "bad_input", module
        assert "full_mix.flac" in failed[module].message
    got = info(run, "Too Short")
    assert not any(k in got for k in ("lufs", "spectral_flatness", "rms_energy_bass", "key"))


# --- spectral --------------------------------------------------------------------------------

def test_white_noise_has_the_flatness_and_shape_theory_predicts(run):
    got = info(run, "White Noise")
    # Power of a white Gaussian spectrum bin is exponential: geometric/arithmetic mean = e^-γ.
    assert got["spectral_flatness"] == pytest.approx(np.exp(-np.euler_gamma), abs=0.01)
    # A flat spectrum is a uniform distribution over frequency: skewness 0, excess kurtosis −1.2.
    assert got["spectral_skewness"] == pytest.approx(0.0, abs=0.05)
    assert got["spectral_kurtosis"] == pytest.approx(-1.2, abs=0.05)


def test_pink_noise_is_flat_compared_with_a_sine(run):
    pink, tone = info(run, "Pink Noise"), info(run, "Sine 1 kHz")
    assert 0.05 < pink["spectral_flatness"] < info(run, "White Noise")["spectral_flatness"]
    assert tone["spectral_flatness"] < 1e-3
    # A sine's spectrum does not change from frame to frame; noise's changes all the time.
    assert tone["spectral_flux"] < 0.05 < pink["spectral_flux"] <= np.sqrt(2)
    # A lone 1 kHz peak is a distribution piled up far below the 11 kHz mid-band.
    assert tone["spectral_skewness"] > 10


# --- multiband_rms ---------------------------------------------------------------------------

@pytest.mark.parametrize("band", list(BANDS))
def test_band_limited_noise_lands_in_its_band_only(run, band):
    got = info(run, f"Band {band}")
    assert got[f"rms_energy_{band}"] == pytest.approx(-20.0, abs=0.1)
    for other in BANDS:
        if other != band:
            assert got[f"rms_energy_{other}"] < -50.0, other


# --- chroma and key ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, key, scale, tonic, fifth, outside", [
    ("Progression, A minor", "A", "minor", 9, 4, sig.OUTSIDE_A_HARMONIC_MINOR),
    ("Progression, E♭ major", "Eb", "major", 3, 10, sig.OUTSIDE_E_FLAT_MAJOR),
])
def test_key_and_chroma_of_a_progression(run, name, key, scale, tonic, fifth, outside):
    got = info(run, name)
    assert (got["key"], got["scale"]) == (f"{key} {scale}", scale)
    assert 0.5 < got["key_strength"] <= 1.0
    chroma = np.array([got[k] for k in CHROMA_KEYS])
    assert chroma.max() == 1.0
    assert set(np.argsort(-chroma)[:2]) == {tonic, fifth}
    assert chroma[outside].max() < 0.15


# --- harmonic ---------------------------------------------------------------------------------

def test_a_held_chord_does_not_move_and_changing_chords_do(run):
    got = info(run, "Harmony")
    assert got["harmonic_movement_bass"] < 0.02 and got["harmonic_variance_bass"] < 0.005
    # Every window alternates between two chords with no common pitch class.
    assert got["harmonic_movement_other"] > 0.8
    assert got["harmonic_variance_other"] > 0.05


def test_harmonic_writes_only_for_present_stems(run):
    got = info(run, "Stems, Some Missing")
    assert "harmonic_movement_other" in got and "harmonic_variance_other" in got
    # The silent bass stem has no pitch to follow: null, with the reason.
    assert got["harmonic_movement_bass"] is None
    assert "bass" in notes(run, "Stems, Some Missing", "harmonic")["harmonic_movement_bass"]
    assert not any(k.startswith("harmonic_") for k in info(run, "White Noise"))


def test_harmonic_is_not_applicable_to_a_mix_without_stems(run):
    """Not "done" with nothing written: n/a, with the reason, in the plan and the run's first event."""
    assert "harmonic" not in info(run, "White Noise")["_mirdeck"]
    started = events_named(run[1], "run_started")[0]
    without_stems = sum(1 for name in run[0] if name not in ("Stems, Some Missing", "Harmony", "Mono Stem"))
    assert started.not_applicable["harmonic"] == {"no bass or other stem": without_stems}
    finished = events_named(run[1], "run_finished")[0]
    assert finished.summary["harmonic"]["not_applicable"] == without_stems
    assert finished.summary["harmonic"]["done"] == 2  # "Stems, Some Missing" and "Harmony"; the mono stem is bass
