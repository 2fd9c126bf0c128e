"""Dataset scan and organize."""
from __future__ import annotations

import pytest

from tui.run.dataset import organize, scan


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_scan_finds_mix_and_stems_and_reports_what_it_skips(tmp_path):
    touch(tmp_path / "A - One" / "full_mix.flac")
    touch(tmp_path / "A - One" / "drums.mp3")
    touch(tmp_path / "A - One" / "Vocals.WAV")
    touch(tmp_path / "A - One" / "notes.txt")
    touch(tmp_path / "B - Two" / "full_mix.mp3")
    touch(tmp_path / "B - Two" / "full_mix.flac")
    touch(tmp_path / "C - stems only" / "bass.flac")
    (tmp_path / "D - empty").mkdir()
    touch(tmp_path / ".mirdeck" / "runs" / "x" / "full_mix.flac")
    result = scan(tmp_path)
    assert [t.name for t in result.tracks] == ["A - One", "B - Two"]
    one, two = result.tracks
    assert one.mix.name == "full_mix.flac" and set(one.stems) == {"drums", "vocals"}
    assert one.info_path.name == "A - One.INFO"
    assert two.mix.name == "full_mix.flac"  # lossless preferred, deterministically
    assert any("B - Two" in p and "using full_mix.flac" in p for p in result.problems)
    assert any("C - stems only" in p and "stems but no full_mix" in p for p in result.problems)
    assert any("D - empty" in p for p in result.problems)


def test_scan_of_a_single_track_folder(tmp_path):
    touch(tmp_path / "full_mix.wav")
    assert [t.folder for t in scan(tmp_path).tracks] == [tmp_path]


def test_scan_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scan(tmp_path / "nope")


def test_organize_copies_moves_and_never_overwrites(tmp_path):
    src, dest = tmp_path / "loose", tmp_path / "ds"
    touch(src / "Artist - Song.mp3", b"song")
    touch(src / "sub" / "Other - Tune.FLAC", b"tune")
    touch(src / "sub" / "Artist - Song.wav", b"dup")
    touch(dest / "Existing" / "full_mix.wav", b"keep me")
    touch(src / "Existing.flac", b"new")
    actions = organize(src, dest)
    done = {a.source.name: a for a in actions}
    assert (dest / "Artist - Song" / "full_mix.mp3").read_bytes() == b"song"
    assert (dest / "Other - Tune" / "full_mix.flac").read_bytes() == b"tune"
    assert not done["Artist - Song.wav"].done and "already goes to" in done["Artist - Song.wav"].reason
    assert not done["Existing.flac"].done and "already exists" in done["Existing.flac"].reason
    assert (dest / "Existing" / "full_mix.wav").read_bytes() == b"keep me"
    assert (src / "Artist - Song.mp3").exists()  # copy by default
    again = organize(src, dest)
    assert not any(a.done for a in again)  # a second run refuses everything, changes nothing
    moved = organize(src / "sub", tmp_path / "ds2", move=True)
    assert all(a.done for a in moved) and not (src / "sub" / "Other - Tune.FLAC").exists()
