"""The dashboard's ETA against what was really left, replayed from a finished run's events.jsonl.

    python -m benchmarks.eta RUN_LOG_DIR_OR_EVENTS_JSONL [...]
    python -m benchmarks.eta --constructed [--tracks 16] [--jobs 2]

The second form first runs the engine on a dataset it writes (4 s sine tracks) with five modules:
four fast real ones and ``dear`` (tests/support/fake_backends/dear.py), whose worker sleeps a
constructed 0.5 s per audio second, so almost all of the run is one module, as timbral is on
real music.

Feeds the run's events, in order and at their own times, to the dashboard's model (RunView)
and, at 10 %, 25 %, 50 % and 75 % of the run's wall time, prints the seconds really left, the
ETA the dashboard shows (each module weighed by its measured cost per audio second) and the ETA
that weighs every module×track request the same (what it showed before).
"""
from __future__ import annotations

import sys
from pathlib import Path

from tui.dashboard.runview import RunView
from tui.run import events as ev
from tui.run.runlog import read_events

BY_NAME = {name: cls for cls, name in ev._NAMES.items()}


def _event(record: dict) -> ev.Event | None:
    cls = BY_NAME.get(record.get("event", ""))
    if cls is None:
        return None
    fields = {k: v for k, v in record.items() if k != "event"}
    try:
        return cls(**fields)
    except TypeError:
        return None


def count_eta(view: RunView) -> float | None:
    done, total = view.units()
    elapsed = view.elapsed()
    return None if done == 0 or elapsed <= 0 else (total - done) * elapsed / done


def replay(path: Path) -> list[tuple[float, float, float | None, float | None]]:
    records = read_events(path)
    events = [e for e in map(_event, records) if e is not None]
    start = next(e.time for e in events if isinstance(e, ev.RunStarted))
    end = next(e.time for e in events if isinstance(e, ev.RunFinished))
    marks = [start + f * (end - start) for f in (0.10, 0.25, 0.50, 0.75)]
    now = [start]
    view = RunView(clock=lambda: now[0])
    rows = []
    for event in events:
        while marks and event.time > marks[0]:
            now[0] = marks.pop(0)
            rows.append((now[0] - start, end - now[0], view.eta_seconds(), count_eta(view)))
        if isinstance(event, ev.RunFinished):
            break
        now[0] = event.time
        view(event)
    return rows


def constructed_run(root: Path, tracks: int, jobs: int) -> Path:
    import asyncio
    import os

    import numpy as np
    import soundfile

    from tui.run.engine import Engine, RunOptions
    from tui.run.profiles import load
    from tui.run.runlog import RunLog

    os.environ["MIRDECK_EXTRA_BACKENDS"] = "tests.support.fake_backends.dear"
    t = np.arange(4 * 44100) / 44100
    tone = np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2, axis=1).astype(np.float32)
    for i in range(tracks):
        (root / "ds" / f"t{i:02d}").mkdir(parents=True)
        soundfile.write(root / "ds" / f"t{i:02d}" / "full_mix.flac", tone, 44100)
    engine = Engine(root / "ds", load("cpu"), RunOptions(
        only=["audio_info", "loudness", "spectral", "multiband_rms", "dear"], jobs=jobs, log_dir=root / "log"))
    engine.subscribe(RunLog(engine.log_dir))
    asyncio.run(engine.run())
    return root / "log"


def main(argv: list[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    if args[:1] == ["--constructed"]:
        import argparse
        import os
        import shutil
        import tempfile

        parser = argparse.ArgumentParser()
        parser.add_argument("--constructed", action="store_true")
        parser.add_argument("--tracks", type=int, default=16)
        parser.add_argument("--jobs", type=int, default=2)
        opts = parser.parse_args(args)
        with tempfile.TemporaryDirectory(prefix="mirdeck-eta-") as tmp:
            log = constructed_run(Path(tmp), opts.tracks, opts.jobs)
            if os.environ.get("MIRDECK_ETA_KEEP"):
                shutil.copytree(log, os.environ["MIRDECK_ETA_KEEP"], dirs_exist_ok=True)
            return main([str(log)])
    paths = [Path(a) for a in args]
    if not paths:
        print(__doc__)
        return 2
    show = lambda v: "–" if v is None else f"{v:8.1f}"  # noqa: E731
    for given in paths:
        path = given / "events.jsonl" if given.is_dir() else given
        print(f"{path}")
        print(f"{'elapsed s':>10} {'really left s':>13} {'ETA weighted':>12} {'ETA by count':>12}")
        for elapsed, left, weighted, counted in replay(path):
            print(f"{elapsed:>10.1f} {left:>13.1f} {show(weighted):>12} {show(counted):>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
