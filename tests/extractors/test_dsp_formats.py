"""The DSP modules on unusual but valid files: 8 kHz mono, 48 kHz 5.1, odd folder names.
Loudness must follow BS.1770's channel rules at the file's own rate; the 44.1 kHz modules must
read the engine's resampled PCM."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support.helpers import events_named, info_of, run_engine, write_track

MODULES = ["loudness", "spectral", "multiband_rms", "chroma"]


def tone(rate: int, seconds: float, peak_dbfs: float) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (10 ** (peak_dbfs / 20) * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("formats") / "dataset"
    folders = {}
    # One channel: BS.1770 sums channel powers, so a mono 1 kHz sine at −23 dBFS peak is 3 dB
    # quieter than the same sine in both channels of a stereo file: −26.0 LUFS.
    folders["mono8k"] = write_track(root, "Phone Call 8 kHz", tone(8000, 10, -23.0), rate=8000, fmt="wav")
    # 5.1 (L R C LFE Ls Rs) with the sine in L and R only reads as the stereo case, −23.0 LUFS.
    surround = np.zeros((10 * 48000, 6), dtype=np.float32)
    surround[:, 0] = surround[:, 1] = tone(48000, 10, -23.0)
    folders["surround"] = write_track(root, "Surround 5.1 48 kHz", surround, rate=48000, fmt="wav")
    folders["odd"] = write_track(root, "Ünïcode, \"Quotes\" & Spaces – Mix", np.stack(
        [tone(44100, 8, -20.0)] * 2, axis=1), fmt="flac")
    events, _ = run_engine(root, only=MODULES)
    return folders, events


def test_no_module_fails_on_unusual_valid_files(run):
    assert events_named(run[1], "module_failed") == []


def test_mono_8k_loudness_counts_one_channel(run):
    got = info_of(run[0]["mono8k"])
    assert got["lufs"] == pytest.approx(-26.0, abs=0.1)
    assert got["true_peak_dbtp"] == pytest.approx(-23.0, abs=0.1)
    # Resampled to 44.1 kHz for the band split: nothing exists above the 4 kHz Nyquist of the file.
    assert got["rms_energy_mid"] > -30 and got["rms_energy_air"] < got["rms_energy_mid"] - 40


def test_surround_loudness_uses_front_channels(run):
    got = info_of(run[0]["surround"])
    assert got["lufs"] == pytest.approx(-23.0, abs=0.1)


def test_odd_folder_names_get_their_info(run):
    got = info_of(run[0]["odd"])
    assert got["lufs"] == pytest.approx(-20.0, abs=0.1)
    assert got["chroma_0"] is not None  # a 1 kHz tone is pitched (close to B5)
