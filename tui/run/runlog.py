"""The run's JSON-lines side channel: every engine event, one object per line, for scripts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tui.run import events as ev


class RunLog:
    """Subscriber that appends events to ``<log_dir>/events.jsonl``.

    Worker stderr lines go to ``workers.log`` (written by the engine), not here.
    """

    def __init__(self, log_dir: Path):
        log_dir.mkdir(parents=True, exist_ok=True)
        self.path = log_dir / "events.jsonl"
        self._fh = open(self.path, "ab", buffering=0)

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.WorkerLog) or self._fh.closed:
            return
        # Each event reaches the file as it happens (one write, no buffer): a ``tail -f`` follows
        # the run, and a run killed with SIGKILL leaves every event up to its death. The OS
        # keeps the page cache; there is no fsync per line.
        self._fh.write(orjson.dumps(event.to_dict()) + b"\n")
        if isinstance(event, ev.RunFinished):
            self._fh.close()
            if event.left:
                write_left(self.path.parent / LEFT_FILE, event.left)


LEFT_FILE = "not-processed.txt"


def write_left(path: Path, left: dict[str, list[str]]) -> None:
    """What a stopped run did not process: one track a line, tab, its modules."""
    path.write_text("".join(f"{track}\t{','.join(modules)}\n" for track, modules in left.items()),
                    encoding="utf-8")


def read_events(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
