"""The dashboard's own CPU cost during a 1,000-track run with a fast backend.

Runs the same run three ways in this process: the engine alone (with its JSON-lines run log), then the
engine under the Textual dashboard (headless driver, 120x40) at 4 Hz and at 10 Hz. The
dashboard's share is the extra CPU time of this process divided by the run's wall time, in %
of one core. Worker processes are children and are not counted in either.

    python -m benchmarks.dashboard [--tracks 1000]

The headless driver composes every frame like a terminal driver but writes nothing, so the
cost of the terminal emulator drawing the output is not in these numbers.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

os.environ["MIRDECK_EXTRA_BACKENDS"] = "tests.dashboard_backends.dash_fast"


def make_dataset(root: Path, tracks: int) -> Path:
    import numpy as np
    import soundfile

    data = np.zeros((800, 2), dtype=np.float32)
    for i in range(tracks):
        folder = root / f"Artist {i:04d} - Title {i:04d}"
        folder.mkdir(parents=True)
        soundfile.write(folder / "full_mix.wav", data, 8000)
    return root


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Window:
    """CPU and wall time of this process in the steady state: from the ``warmup``-th finished
    track to RunFinished. Start-up (imports, CSS, the first frames, workers starting) is left
    out of both sides of the comparison."""

    def __init__(self, warmup: int = 100):
        self.start = self.end = (0.0, 0.0)
        self.events = 0
        self.tracks = 0
        self.warmup = warmup

    def __call__(self, event) -> None:
        self.events += 1
        if event.name == "track_finished":
            self.tracks += 1
            if self.tracks == self.warmup:
                self.start = (cpu_seconds(), time.perf_counter())
        elif event.name == "run_finished":
            self.end = (cpu_seconds(), time.perf_counter())

    @property
    def cpu(self) -> float:
        return self.end[0] - self.start[0]

    @property
    def wall(self) -> float:
        return self.end[1] - self.start[1]


def engine_for(dataset: Path, log_dir: Path, window: Window):
    from tui.engine import Engine, RunOptions
    from tui.profiles import load

    engine = Engine(dataset, load("cpu"), RunOptions(only=["dash_fast"], overwrite=["dash_fast"], jobs=2,
                                                      log_dir=log_dir))
    engine.subscribe(window)
    return engine


async def run_plain(dataset: Path, log_dir: Path) -> Window:
    """The engine with the run's JSON-lines log, as every view has it (the dashboard adds its own)."""
    from tui.runlog import RunLog

    window = Window()
    engine = engine_for(dataset, log_dir, window)
    engine.subscribe(RunLog(engine.log_dir))
    await engine.run()
    return window


async def run_dashboard(dataset: Path, log_dir: Path, hz: float) -> tuple[Window, int, float]:
    from tui.app import MirdeckApp
    from tui.screens.live import LiveRunScreen

    redraws = [0, 0.0]
    original = LiveRunScreen.redraw

    def counted(self):
        t = time.process_time()
        original(self)
        redraws[0] += 1
        redraws[1] += time.process_time() - t

    LiveRunScreen.redraw = counted
    try:
        window = Window()
        app = MirdeckApp(engine=engine_for(dataset, log_dir, window), refresh_hz=hz)
        app.quit_when_done = True  # leave when the run ends, as a user pressing q would
        await app.run_async(headless=True, size=(120, 40))
        if app.view.fatal or app.view.tracks_finished != window.tracks or window.tracks < window.warmup:
            raise SystemExit(f"the dashboard run did not complete: {app.view.tracks_finished} of "
                             f"{window.tracks} tracks, return code {app.return_code}, {app.view.fatal}")
        return window, redraws[0], redraws[1]
    finally:
        LiveRunScreen.redraw = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=1000)
    args = parser.parse_args()
    from rich.console import Console
    from rich.table import Table

    tmp = Path(tempfile.mkdtemp(prefix="mirdeck-bench-dash-"))
    try:
        dataset = make_dataset(tmp / "ds", args.tracks)
        plain = asyncio.run(run_plain(dataset, tmp / "log0"))
        n_events = plain.events
        rows = [("engine + run log", plain.wall, plain.cpu, None, "–", "–")]
        for hz in (4.0, 10.0):
            window, n, redraw_cpu = asyncio.run(run_dashboard(dataset, tmp / f"log{hz}", hz))
            # Same work on both sides: the extra CPU is the dashboard's (events, redraws, probes).
            own = (window.cpu - plain.cpu) / window.wall * 100  # same tracks measured on both sides
            rows.append((f"dashboard {hz:g} Hz", window.wall, window.cpu, own, f"{n}",
                         f"{redraw_cpu / max(1, n) * 1000:.2f}"))
        table = Table(title=f"dashboard CPU during a {args.tracks:,}-track run (dash_fast backend, "
                            f"{n_events:,} engine events, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
                            f"measured after the first {plain.warmup} tracks)", title_justify="left")
        for column in ("run", "run wall s", "parent CPU s", "dashboard %core", "redraws", "ms/redraw"):
            table.add_column(column, justify="right" if column != "run" else "left")
        for name, wall, cpu, own, n, per in rows:
            table.add_row(name, f"{wall:.1f}", f"{cpu:.1f}", "–" if own is None else f"{own:.1f} %", n, per)
        Console().print(table)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
