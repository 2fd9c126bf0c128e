"""What the dashboard's A/B view reads: finished A/B reports on disk, and the progress of an A/B
running in a background thread. Textual-free, so scripts and tests can use it too.

Reports are the folders ``mirdeck ab`` writes (``summary.json`` plus one JSON per track); the view
looks for them under the dataset (``.mirdeck/ab/``, where an A/B started from the dashboard goes)
and under ``./mirdeck-ab/`` (the command line's default).
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui.ab import BACKENDS, _report_name

SIDE_LABEL = {"gguf": "GGUF (llama.cpp)", "hf": "transformers"}


def dataset_ab_dir(dataset: Path) -> Path:
    return Path(dataset) / ".mirdeck" / "ab"


def find_reports(dataset: Path | None, cwd: Path | None = None) -> list[Path]:
    """Report folders, newest first (by their summary's time)."""
    roots = ([dataset_ab_dir(dataset)] if dataset else []) + [Path(cwd or Path.cwd()) / "mirdeck-ab"]
    found = {summary.parent.resolve() for root in roots if root.is_dir()
             for summary in root.glob("*/summary.json")}
    return sorted(found, key=lambda folder: (folder / "summary.json").stat().st_mtime, reverse=True)


@dataclass
class ABReport:
    folder: Path
    summary: dict[str, Any]
    tracks: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)
    """Track reports named in the summary that could not be read (the view says so)."""


class ReportError(Exception):
    pass


def load_report(folder: Path) -> ABReport:
    folder = Path(folder)
    try:
        data = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"{folder / 'summary.json'}: cannot read the A/B summary ({exc})") from exc
    tracks, problems = [], []
    for name in data.get("tracks", []):
        path = folder / f"{_report_name(name)}.json"
        try:
            tracks.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: {exc}")
    return ABReport(folder, data.get("summary", {}), tracks, problems)


def evenly_spaced(items: list, count: int) -> list:
    """``count`` items spread over the whole list (first and last included), in order: an A/B on a
    few tracks should see the whole dataset, not only its first folder's artist."""
    if count <= 0 or not items:
        return []
    if count >= len(items):
        return list(items)
    if count == 1:
        return [items[0]]
    step = (len(items) - 1) / (count - 1)
    return [items[round(i * step)] for i in range(count)]


class ABProgress:
    """Counts of a running A/B, written by the A/B thread's engine events and read by the screen.

    Plain attribute updates only (each a single bytecode store under the GIL), so the screen can
    poll it without locks; nothing here calls into Textual from the other thread.
    """

    def __init__(self, tracks: int, out_dir: Path):
        self.tracks = tracks
        self.out_dir = out_dir
        self.side = ""
        self.done: dict[str, int] = dict.fromkeys(BACKENDS, 0)
        self.failed: dict[str, int] = dict.fromkeys(BACKENDS, 0)
        self.current = ""
        self.last_error = ""
        self.started = time.time()
        self.finished: float | None = None
        self.error = ""
        self.stop = threading.Event()
        self._side_of = {module: side for side, module in BACKENDS.items()}

    def __call__(self, event) -> None:
        side = self._side_of.get(getattr(event, "module", ""), "")
        if event.name == "module_started" and side:
            self.side, self.current = side, event.track
        elif event.name == "module_finished" and side:
            self.done[side] += 1
        elif event.name == "module_failed" and side:
            self.failed[side] += 1
            self.last_error = f"{SIDE_LABEL[side]}: {event.track}: {event.kind}: {event.message}"

    @property
    def running(self) -> bool:
        return self.finished is None

    def line(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if self.error:
            return f"A/B failed: {self.error}"
        parts = [f"{SIDE_LABEL[s]} {self.done[s] + self.failed[s]}/{self.tracks}"
                 + (f" ({self.failed[s]} failed)" if self.failed[s] else "") for s in BACKENDS]
        elapsed = int((self.finished or now) - self.started)
        if self.finished is not None:
            word = "stopped" if self.stop.is_set() else "finished"
            return f"A/B {word} in {elapsed // 60} m {elapsed % 60:02d} s: " + " · ".join(parts)
        doing = f" · now {SIDE_LABEL[self.side]} on {self.current}" if self.side else " · starting the workers"
        return f"A/B running {elapsed // 60} m {elapsed % 60:02d} s: " + " · ".join(parts) + doing
