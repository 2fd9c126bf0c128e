"""``mirdeck run --dry-run``: the run's own plan printed, nothing started or written."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.support.helpers import run_engine, sine, write_track
from tui.paths import ROOT


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    ds = tmp_path / "ds"
    for name in ("A", "B", "C"):
        write_track(ds, name, sine(220.0, 2.0))
    write_track(ds, "D", sine(220.0, 2.0), stems={"bass": sine(55.0, 2.0)})
    (ds / "no mix here").mkdir()
    run_engine(ds, only=["loudness"], log_dir=tmp_path / "first-run")
    infos = sorted(ds.glob("*/*.INFO"))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in infos}
    listing = sorted(p.relative_to(ds) for p in ds.rglob("*"))
    done = subprocess.run([sys.executable, "-m", "tui.cli", "run", str(ds), "--dry-run",
                           "--only", "loudness,harmonic,audio_info"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**os.environ, "COLUMNS": "160"})
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()
            if line.split() and line.split()[0] in ("loudness", "harmonic", "audio_info")}
    assert rows["loudness"][1:4] == ["0", "4", "0"]  # done on every track
    assert rows["audio_info"][1:4] == ["4", "0", "0"]
    assert rows["harmonic"][1:4] == ["1", "0", "3"] and "no bass or other stem (3)" in done.stdout
    assert "4 tracks to work on, 5 module runs" in done.stdout
    assert "skipped: " in done.stdout and "no mix here" in done.stdout
    # Nothing written: the .INFO files as they were, no run folder, no lock, no new file at all.
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in infos} == before
    assert sorted(p.relative_to(ds) for p in ds.rglob("*")) == listing
