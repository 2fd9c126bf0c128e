"""Durations from file headers (the engine's probe before a sweep sized by the longest track)."""
from __future__ import annotations

import subprocess

import soundfile

from backends.audio import probe_duration
from tests.support.helpers import sine


def test_durations_come_from_the_headers_of_every_format(tmp_path):
    signal = sine(440.0, 2.5)
    soundfile.write(tmp_path / "a.flac", signal, 44100)
    soundfile.write(tmp_path / "b.ogg", signal, 44100)
    soundfile.write(tmp_path / "src.wav", signal, 48000)  # 2.5 s of 44.1 kHz frames read at 48 kHz
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(tmp_path / "a.flac"), "-c:a", "aac",
                    str(tmp_path / "c.m4a")], check=True)
    assert abs(probe_duration(tmp_path / "a.flac") - 2.5) < 1e-3
    assert abs(probe_duration(tmp_path / "b.ogg") - 2.5) < 0.01
    assert abs(probe_duration(tmp_path / "src.wav") - 2.5 * 44100 / 48000) < 1e-3
    assert abs(probe_duration(tmp_path / "c.m4a") - 2.5) < 0.1  # AAC priming and padding


def test_a_file_that_is_not_audio_has_no_duration(tmp_path):
    junk = tmp_path / "full_mix.flac"
    junk.write_bytes(b"fLaC" + b"\x00" * 100)
    assert probe_duration(junk) is None
    assert probe_duration(tmp_path / "missing.wav") is None
