"""The progress of an A/B running in a background thread, as the dashboard's A/B view polls it."""
from __future__ import annotations

import threading
import time
from pathlib import Path

from tui.ab.reports import BACKENDS, SIDE_LABEL


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
