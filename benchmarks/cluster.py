"""The same dataset with the local scheduler and on 1 and 2 nodes of a local Ray cluster
(tests/support/ray_cluster.py: one CPU per node, loopback): tracks per second, and the driver's
overhead per track-module (time from sending a request to recording its result, less the
module's own compute time), which is what --cluster adds on top of a local run.

    python -m benchmarks.cluster [--tracks 12] [--seconds 3] [--modules audio_info,loudness,spectral]

The audio is synthesised (tones and noise): the overhead does not depend on what the music is.
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from tests.support.helpers import sine, write_track
from tests.support.ray_cluster import start_cluster


def synthesise(root: Path, tracks: int, seconds: float) -> None:
    rng = np.random.default_rng(1)
    for i in range(tracks):
        tone = sine(110 * (i % 7 + 2), seconds, amplitude=0.2)
        write_track(root, f"track{i:03d}", tone + (0.05 * rng.standard_normal(tone.shape)).astype(np.float32))


def one_run(dataset: Path, log_dir: Path, modules: list[str], jobs: int, cluster: str | None) -> dict:
    from tui.run.engine import Engine, RunOptions
    from tui.run.profiles import load

    engine = Engine(dataset, load("cpu"), RunOptions(only=modules, jobs=jobs, log_dir=log_dir, cluster=cluster))
    sent: dict[tuple[str, str], float] = {}
    overheads: list[float] = []
    finished: list[float] = []

    def watch(e) -> None:
        if e.name == "track_finished":
            finished.append(e.time)
        elif e.name == "module_started" and e.module != "decode":
            sent[(e.track, e.module)] = e.time
        elif e.name == "module_finished":
            overheads.append(e.time - sent[(e.track, e.module)] - e.wall_seconds)

    engine.subscribe(watch)
    began = time.perf_counter()
    stats = asyncio.run(engine.run())
    wall = time.perf_counter() - began
    done = min(s.done for s in stats.values())
    # Once every worker is up: tracks per second between the first and the last finished track.
    steady = (len(finished) - 1) / (finished[-1] - finished[0]) if len(finished) > 1 else 0.0
    overhead_ms = 1000 * statistics.mean(overheads) if overheads else 0.0
    return {"wall": wall, "tracks": done, "steady": steady, "overhead_ms": overhead_ms,
            "failed": sum(s.failed for s in stats.values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracks", type=int, default=12)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--modules", default="audio_info,loudness,spectral")
    args = parser.parse_args(argv)
    modules = args.modules.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        master = Path(tmp) / "master"
        synthesise(master, args.tracks, args.seconds)

        def fresh(name: str) -> Path:
            copy = Path(tmp) / name
            shutil.copytree(master, copy)
            return copy

        for jobs in (1, 2):
            rows.append((f"local, {jobs} job{'s' if jobs > 1 else ''}",
                         one_run(fresh(f"local{jobs}"), Path(tmp) / f"log-local{jobs}", modules, jobs, None)))
        for nodes in (1, 2):
            cluster = start_cluster(nodes=nodes)
            try:
                rows.append((f"ray, {nodes} node{'s' if nodes > 1 else ''} x 1 CPU",
                             one_run(fresh(f"ray{nodes}"), Path(tmp) / f"log-ray{nodes}", modules, 0, cluster.address)))
            finally:
                cluster.stop()
    table = Table(title=f"{args.tracks} tracks x {args.seconds:g} s, modules {', '.join(modules)}")
    columns = ("scheduler", "wall s", "tracks/s", "tracks/s after 1st", "overhead ms / track-module", "failed")
    for column in columns:
        table.add_column(column, justify="left" if column == "scheduler" else "right")
    for name, r in rows:
        table.add_row(name, f"{r['wall']:.1f}", f"{r['tracks'] / r['wall']:.2f}", f"{r['steady']:.2f}",
                      f"{r['overhead_ms']:.1f}",
                      str(r["failed"]))
    Console().print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
