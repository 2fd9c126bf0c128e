"""What a client that attaches late is sent first: the run so far, compacted.

Every event is kept, in order, except what no longer changes what a view shows: the start and
progress messages of a request that has since finished or failed (a view that sees the finish
without the start ends in the same state), every progress message but the latest of a request
still running, and worker stderr lines beyond the last ``log_tail``. Replaying this into a fresh
``RunView`` gives the counters, the tracks in flight and the errors of a view that watched from the
start. A run of 10,000 tracks x 15 modules keeps about 180,000 lines (some 40 MB) here.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

from tui.run import events as ev

LOG_TAIL = 2000


class Replay:
    def __init__(self, log_tail: int = LOG_TAIL):
        self._lines: dict[int, bytes] = {}
        self._seq = 0
        self._started: dict[tuple[str, str], list[int]] = {}  # (track, module) -> its start lines
        self._progress: dict[tuple[str, str], int] = {}  # (track, module) -> its latest progress line
        self._logs: deque[int] = deque()
        self._log_tail = log_tail

    def add(self, event: ev.Event, line: bytes) -> None:
        self._seq += 1
        seq = self._seq
        self._lines[seq] = line
        if isinstance(event, ev.WorkerLog):
            self._logs.append(seq)
            if len(self._logs) > self._log_tail:
                self._lines.pop(self._logs.popleft(), None)
        elif isinstance(event, ev.ModuleProgress):
            key = (event.track, event.module)
            previous = self._progress.get(key)
            if previous is not None:
                self._lines.pop(previous, None)
            self._progress[key] = seq
        elif isinstance(event, ev.ModuleStarted):
            self._started.setdefault((event.track, event.module), []).append(seq)
        elif isinstance(event, (ev.ModuleFinished, ev.ModuleFailed)):
            key = (event.track, event.module)
            for old in self._started.pop(key, []):
                self._lines.pop(old, None)
            previous = self._progress.pop(key, None)
            if previous is not None:
                self._lines.pop(previous, None)

    def __iter__(self) -> Iterator[bytes]:
        return iter(list(self._lines.values()))

    def __len__(self) -> int:
        return len(self._lines)


@dataclass
class RunProgress:
    """The few numbers ``mirdeck status`` prints, kept up to date from the events."""

    dataset: str = ""
    profile: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    units_total: int = 0
    units_done: int = 0
    tracks_total: int = 0
    tracks_done: int = 0
    failed: int = 0
    modules: list[str] = field(default_factory=list)
    decode: dict[str, dict[str, float | None]] = field(default_factory=dict)
    """Text-generating modules (the Flamingo back ends): module -> tokens generated, decode seconds,
    and the latest track's tokens/s, as the dashboard's text-generation panel shows them."""

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self.dataset, self.profile, self.started_at = event.dataset, event.profile, event.time
            self.units_total = sum(event.planned.values())
            self.tracks_total = max(event.planned.values(), default=0)
            self.modules = list(event.modules)
        elif isinstance(event, ev.ModuleFinished):
            self.units_done += 1
            if event.generated_tokens:
                d = self.decode.setdefault(event.module, {"generated_tokens": 0, "seconds": 0.0})
                d["generated_tokens"] = (d["generated_tokens"] or 0) + event.generated_tokens
                d["seconds"] = (d["seconds"] or 0.0) + event.decode_seconds
                d["last_tokens_per_s"] = (round(event.generated_tokens / event.decode_seconds, 2)
                                          if event.decode_seconds > 0 else None)
        elif isinstance(event, ev.ModuleFailed) and not (event.kind in ("crash", "timeout") and event.attempt == 1):
            self.units_done += 1
            self.failed += 1
        elif isinstance(event, ev.TrackFinished):
            self.tracks_done += 1
        elif isinstance(event, ev.RunFinished):
            self.finished_at = event.time

    def eta_seconds(self, now: float | None = None, *, paused: bool = False) -> float | None:
        """Seconds left at the pace so far (pauses included in the pace); None until a request
        has finished, or while paused."""
        if self.started_at is None or self.finished_at is not None or paused or not self.units_done:
            return None
        elapsed = (now or time.time()) - self.started_at
        return max(0.0, (self.units_total - self.units_done) * elapsed / self.units_done)

    def to_dict(self, *, paused: bool = False) -> dict[str, object]:
        eta = self.eta_seconds(paused=paused)
        return {"dataset": self.dataset, "profile": self.profile, "started_at": self.started_at,
                "finished_at": self.finished_at, "units_total": self.units_total, "units_done": self.units_done,
                "tracks_total": self.tracks_total, "tracks_done": self.tracks_done, "failed": self.failed,
                "modules": self.modules, "eta_seconds": None if eta is None else round(eta, 1),
                "decode": {m: self._decode_state(d) for m, d in self.decode.items()}}

    @staticmethod
    def _decode_state(d: dict[str, float | None]) -> dict[str, float | None]:
        tokens, seconds = d["generated_tokens"] or 0, d["seconds"] or 0.0
        return {"generated_tokens": tokens, "seconds": round(seconds, 4),
                "last_tokens_per_s": d.get("last_tokens_per_s"),
                "mean_tokens_per_s": round(tokens / seconds, 2) if seconds > 0 else None}
