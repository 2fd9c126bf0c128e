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
        self._fh = open(self.path, "ab")

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.WorkerLog):
            return
        self._fh.write(orjson.dumps(event.to_dict()) + b"\n")
        if isinstance(event, (ev.RunFinished, ev.ModuleFailed, ev.StoreProblem)):
            self._fh.flush()
        if isinstance(event, ev.RunFinished):
            self._fh.close()


def read_events(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
