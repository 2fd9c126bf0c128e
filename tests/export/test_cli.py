"""``mirdeck export`` on the command line: what it prints, and clear errors for bad input."""
from __future__ import annotations

import subprocess
import sys


def mirdeck(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tui.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_export_prints_what_it_wrote_and_what_it_left_out(analysed, tmp_path):
    done = mirdeck("export", analysed, "--to", "acestep", "--out", tmp_path / "out")
    assert done.returncode == 0, done.stderr
    assert "acestep: 5 of 6 tracks" in done.stdout and "11 files written, 0 unchanged" in done.stdout
    assert "left out: Broken - Bad Info: .INFO unreadable" in done.stderr
    again = mirdeck("export", analysed, "--to", "acestep", "--out", tmp_path / "out")
    assert "0 files written, 11 unchanged, 0 removed" in again.stdout


def test_the_default_output_is_inside_the_dataset_and_hidden_from_the_scan(dataset):
    done = mirdeck("export", dataset, "--to", "jsonl")
    assert done.returncode == 0, done.stderr
    assert (dataset / ".mirdeck" / "export" / "jsonl" / "tracks.jsonl").exists()
    scan = mirdeck("scan", dataset)
    assert "6 tracks" in scan.stderr


def test_bad_input_is_named(analysed, tmp_path):
    bad = tmp_path / "t.toml"
    bad.write_text("parts = [", encoding="utf-8")
    done = mirdeck("export", analysed, "--to", "jsonl", "--template", bad, "--out", tmp_path / "o")
    assert done.returncode == 2 and f"{bad}: not valid TOML" in done.stderr
    done = mirdeck("export", tmp_path / "nowhere", "--to", "jsonl")
    assert done.returncode == 2 and "nowhere: dataset folder does not exist" in done.stderr
    done = mirdeck("export", analysed, "--to", "mp4")
    assert done.returncode == 2 and "invalid choice" in done.stderr
