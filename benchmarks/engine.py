"""Engine overhead per track and module (no-op backend) and dataset scan speed.

    python -m benchmarks.engine [--tracks 1000] [--scan 10000]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table


def make_folders(root: Path, count: int) -> None:
    for i in range(count):
        folder = root / f"Artist {i % 97} - Title {i:05d}"
        folder.mkdir(parents=True)
        (folder / "full_mix.flac").write_bytes(b"")
        if i % 3 == 0:
            (folder / "drums.flac").write_bytes(b"")


def bench_engine(tracks: int, jobs: int) -> dict:
    os.environ["MIRDECK_EXTRA_BACKENDS"] = "tests.support.fake_backends.noop"
    from tui.run.engine import Engine, RunOptions
    from tui.run.profiles import load

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        make_folders(root, tracks)
        engine = Engine(root, load("cpu"), RunOptions(only=["noop"], jobs=jobs, log_dir=Path(tmp) / "log"))
        started = time.perf_counter()
        first_result = []
        engine.subscribe(lambda e: first_result.append(time.perf_counter())
                         if e.name == "module_finished" and not first_result else None)
        stats = asyncio.run(engine.run())
        wall = time.perf_counter() - started
        assert stats["noop"].done == tracks, stats["noop"]
    steady = (wall - (first_result[0] - started)) / max(1, tracks - 1) * 1000
    return {"wall": wall, "per": wall / tracks * 1000, "steady": steady}


def bench_scan(count: int) -> dict:
    from tui.run.dataset import scan

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        make_folders(root, count)
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            result = scan(root)
            best = min(best, time.perf_counter() - started)
        assert len(result.tracks) == count
    return {"wall": best}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracks", type=int, default=1000)
    parser.add_argument("--scan", type=int, default=10000)
    args = parser.parse_args()
    console = Console()
    table = Table(title="engine overhead (no-op backend, includes worker start, decode skipped, .INFO write + fsync)")
    for col in ("tracks", "jobs", "wall s", "ms per track-module", "ms per track-module after first result", "target"):
        table.add_column(col, justify="right")
    for jobs in (1, 2):
        r = bench_engine(args.tracks, jobs)
        table.add_row(str(args.tracks), str(jobs), f"{r['wall']:.2f}", f"{r['per']:.2f}", f"{r['steady']:.2f}", "< 10")
    console.print(table)
    s = bench_scan(args.scan)
    table = Table(title="dataset scan (best of 3)")
    for col in ("track folders", "wall s", "target"):
        table.add_column(col, justify="right")
    table.add_row(f"{args.scan:,}", f"{s['wall']:.3f}", "< 2")
    console.print(table)


if __name__ == "__main__":
    main()
