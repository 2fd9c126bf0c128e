"""The dashboard's own CPU cost during a 1,000-track run with a fast backend.

Runs the same run three ways in this process: the engine alone (with its JSON-lines run log), then the
engine under the Textual dashboard (headless driver, 120x40) at 4 Hz and at 10 Hz, and repeats the
three in turn (``--repeat``, 5 by default) because one run lasts only a few seconds and other work on
the machine moves single numbers by ±10 %. The dashboard's share is the extra CPU time of this
process per track (median over the repeats, dashboard minus engine alone) times the tracks, divided
by the run's wall time under the dashboard, in % of one core. Worker processes are children and
are not counted in either.

    python -m benchmarks.dashboard [--tracks 1000] [--repeat 5]

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

os.environ["MIRDECK_EXTRA_BACKENDS"] = "tests.support.dashboard_backends.dash_fast"


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
    from tui.run.engine import Engine, RunOptions
    from tui.run.profiles import load

    engine = Engine(dataset, load("cpu"), RunOptions(only=["dash_fast"], overwrite=["dash_fast"], jobs=2,
                                                      log_dir=log_dir))
    engine.subscribe(window)
    return engine


async def run_plain(dataset: Path, log_dir: Path) -> Window:
    """The engine with the run's JSON-lines log, as every view has it (the dashboard adds its own)."""
    from tui.run.runlog import RunLog

    window = Window()
    engine = engine_for(dataset, log_dir, window)
    engine.subscribe(RunLog(engine.log_dir))
    await engine.run()
    return window


class Attributed:
    """CPU time (of the thread that runs it) spent in the dashboard's own entry points while the
    window is open: redraws, Textual's frame composition, the view's event handling, the probes.
    Thread CPU time is not inflated by other processes the way a difference of two runs is, so
    this column is the steadier one on a busy machine; it leaves out Textual's small per-message
    bookkeeping, so it is a lower bound."""

    PARTS = ("redraw", "frames", "events", "probes")

    def __init__(self, window: Window):
        self.window = window
        self.seconds = dict.fromkeys(self.PARTS, 0.0)
        self.calls = dict.fromkeys(self.PARTS, 0)
        self._undo: list = []

    def wrap(self, owner, name: str, part: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                if self.window.start[1] and not self.window.end[1]:
                    self.seconds[part] += time.thread_time() - start
                    self.calls[part] += 1

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)


async def run_dashboard(dataset: Path, log_dir: Path, hz: float) -> tuple[Window, Attributed]:
    from textual.screen import Screen

    from tui.dashboard.app import MirdeckApp
    from tui.dashboard.runview import RunView
    from tui.dashboard.screens.live import LiveRunScreen

    window = Window()
    attributed = Attributed(window)
    attributed.wrap(LiveRunScreen, "redraw", "redraw")
    attributed.wrap(Screen, "_on_timer_update", "frames")
    attributed.wrap(RunView, "__call__", "events")
    attributed.wrap(MirdeckApp, "read_probes", "probes")
    try:
        app = MirdeckApp(engine=engine_for(dataset, log_dir, window), refresh_hz=hz)
        app.quit_when_done = True  # leave when the run ends, as a user pressing q would
        await app.run_async(headless=True, size=(120, 40))
        if app.view.fatal or app.view.tracks_finished != window.tracks or window.tracks < window.warmup:
            raise SystemExit(f"the dashboard run did not complete: {app.view.tracks_finished} of "
                             f"{window.tracks} tracks, return code {app.return_code}, {app.view.fatal}")
        return window, attributed
    finally:
        attributed.restore()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from statistics import median

    from rich.console import Console
    from rich.table import Table

    tmp = Path(tempfile.mkdtemp(prefix="mirdeck-bench-dash-"))
    runs: dict[str, list[tuple[float, float, float, int]]] = {"plain": [], "4": [], "10": []}
    parts: dict[str, list[dict[str, float]]] = {}
    try:
        dataset = make_dataset(tmp / "ds", args.tracks)
        for i in range(args.repeat):
            plain = asyncio.run(run_plain(dataset, tmp / f"log-plain-{i}"))
            runs["plain"].append((plain.cpu / plain.tracks, plain.wall / plain.tracks, 0.0, 0))
            for hz in (4.0, 10.0):
                window, att = asyncio.run(run_dashboard(dataset, tmp / f"log-{hz:g}-{i}", hz))
                runs[f"{hz:g}"].append((window.cpu / window.tracks, window.wall / window.tracks,
                                        sum(att.seconds.values()) / window.tracks, att.calls["redraw"]))
                parts.setdefault(f"{hz:g}", []).append({p: att.seconds[p] / window.wall * 100 for p in att.PARTS})
        measured = args.tracks - plain.warmup
        plain_cpu = median(r[0] for r in runs["plain"])
        table = Table(title=f"dashboard CPU during a {args.tracks:,}-track run (dash_fast backend, {plain.events:,} "
                            f"engine events, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; the {measured:,} "
                            f"tracks after the first {plain.warmup}; medians of {args.repeat} runs)",
                      title_justify="left")
        for column in ("run", "tracks/s", "parent CPU ms/track", "extra ms/track", "dashboard %core (extra)",
                       "attributed %core", "redraws"):
            table.add_column(column, justify="right" if column != "run" else "left")
        table.add_row("engine + run log", f"{1 / median(r[1] for r in runs['plain']):,.0f}",
                      f"{plain_cpu * 1000:.3f}", "–", "–", "–", "–")
        for hz in ("4", "10"):
            cpu, wall = median(r[0] for r in runs[hz]), median(r[1] for r in runs[hz])
            own = (cpu - plain_cpu) / wall * 100  # extra CPU per track over wall per track
            attributed = median(r[2] / r[1] for r in runs[hz]) * 100
            table.add_row(f"dashboard {hz} Hz", f"{1 / wall:,.0f}", f"{cpu * 1000:.3f}",
                          f"{(cpu - plain_cpu) * 1000:.3f}", f"{own:.1f} %", f"{attributed:.1f} %",
                          f"{median(r[3] for r in runs[hz]):.0f}")
        console = Console(width=140)
        console.print(table)
        for hz in ("4", "10"):
            console.print(f"attributed at {hz} Hz, % of one core: " + ", ".join(
                f"{p} {median(run[p] for run in parts[hz]):.1f}" for p in Attributed.PARTS))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
