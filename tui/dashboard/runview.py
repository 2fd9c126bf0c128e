"""What the dashboard shows, computed from the engine's events: no Textual here.

A ``RunView`` subscribes to an engine (``engine.subscribe(view)``); each event updates plain
counters in O(1), and ``version`` grows, so the screen redraws at its own pace (2–4 Hz) only
when something changed. Times are wall-clock seconds from ``clock`` (frozen in tests).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from tui.gpu.model import GpuSnapshot
from tui.run import events as ev
from tui.run.engine import ModuleStats

LEVELS = ("stderr", "info", "warning", "error")
"""Log levels, least to most severe; the log filter shows a level and everything above it."""
RETRIED_KINDS = ("crash", "timeout")
HISTORY = 60  # samples of GPU/CPU history kept for the sparklines


@dataclass
class ModuleRow(ModuleStats):
    """The engine's counters of one module plus what only the screen needs."""

    name: str = ""
    running: int = 0
    unavailable: str = ""
    pids: set[int] = field(default_factory=set)
    peak_vram: int | None = None
    """Bytes: the most GPU memory this module's workers held at once (None: never seen on a GPU)."""
    last_error: str = ""

    rtf = ModuleStats.realtime_factor

    @property
    def finished(self) -> int:
        return self.done + self.failed

    def state(self, run_over: bool) -> str:
        if self.unavailable:
            return "unavailable"
        if self.running:
            return "running"
        if self.failed and not self.done:
            return "failing"
        if self.planned and self.finished >= self.planned:
            return "done"
        if run_over:
            return "stopped" if self.planned else "done"
        if not self.planned:
            return "done"
        return "idle" if self.pids else "waiting"


@dataclass
class LogEntry:
    seq: int
    time: float
    level: str
    module: str
    message: str
    track: str = ""
    pid: int = 0


@dataclass
class TrackState:
    """A track in flight: module -> (fraction 0–1, stage) of the requests now running."""

    name: str
    started: float
    modules: list[str]
    progress: dict[str, tuple[float, str]] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)


@dataclass
class HostReading:
    cpu_percent: float | None = None
    """Whole machine, 0–100 % of all cores."""
    ram_used: int | None = None
    ram_total: int | None = None
    worker_rss: dict[int, int] = field(default_factory=dict)


class RunView:
    def __init__(self, clock: Callable[[], float] = time.time, log_limit: int = 20000):
        self.clock = clock
        self.version = 0
        self.dataset = ""
        self.profile = ""
        self.log_dir = ""
        self.modules: dict[str, ModuleRow] = {}
        self.decode = ModuleRow(name="decode")
        self.tracks_total = 0
        self.tracks_started = 0
        self.tracks_finished = 0
        self.tracks_failed = 0
        self.audio_done = 0.0
        self.in_flight: dict[str, TrackState] = {}
        self._active: set[tuple[str, str]] = set()  # (track, module) requests running now
        self.log: deque[LogEntry] = deque(maxlen=log_limit)
        self._seq = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.stopped = False
        self.stopping = ""  # "", "graceful", "immediate": what the user asked for
        self.paused = False
        self._paused_since: float | None = None
        self._paused_total = 0.0
        self.latest_track = ""
        self.latest_outcome: dict[str, str] = {}  # module -> "ok" | error kind, of latest_track
        self.errors: dict[str, list[LogEntry]] = {}  # track -> its final failures
        self.worker_module: dict[int, str] = {}
        self.gpu: GpuSnapshot | None = None
        self.gpu_history: dict[int, deque] = {}
        self.host = HostReading()
        self.cpu_history: deque = deque(maxlen=HISTORY)
        self.fatal = ""
        self._handlers: dict[str, Callable | None] = {}

    # -- events ---------------------------------------------------------------------------------
    def __call__(self, event: ev.Event) -> None:
        # A fast run sends thousands of events a second: the handler lookup is cached per name.
        try:
            handler = self._handlers[event.name]
        except KeyError:
            handler = self._handlers[event.name] = getattr(type(self), f"_on_{event.name}", None)
        if handler is not None:
            handler(self, event)
            self.version += 1

    def add_log(self, level: str, module: str, message: str, *, track: str = "", pid: int = 0,
                at: float | None = None) -> LogEntry:
        self._seq += 1
        entry = LogEntry(self._seq, self.clock() if at is None else at, level, module, message, track, pid)
        self.log.append(entry)
        self.version += 1
        return entry

    def _on_run_started(self, e: ev.RunStarted) -> None:
        self.dataset, self.profile, self.log_dir = e.dataset, e.profile, e.log_dir
        self.started_at = e.time
        for name in e.modules:
            self.modules[name] = ModuleRow(name=name, planned=e.planned.get(name, 0), skipped=e.skipped.get(name, 0))
        self.tracks_total = max(e.planned.values(), default=0)
        self.add_log("info", "", f"run started: {e.tracks} tracks, modules {', '.join(e.modules)}; "
                                 f"log in {e.log_dir}", at=e.time)
        for problem in e.scan_problems:
            self.add_log("warning", "", f"scan: {problem}", at=e.time)

    def _on_run_finished(self, e: ev.RunFinished) -> None:
        self.finished_at = e.time
        self.stopped = e.stopped
        self.in_flight.clear()
        self._active.clear()
        for row in self.modules.values():
            row.running = 0
        word = "stopped" if e.stopped else "finished"
        self.add_log("info", "", f"run {word} after {e.wall_seconds:,.1f} s", at=e.time)

    def _on_module_skipped(self, e: ev.ModuleSkipped) -> None:
        self.add_log("info", e.module, f"{e.count} tracks already done, skipped", at=e.time)

    def _on_track_started(self, e: ev.TrackStarted) -> None:
        self.tracks_started += 1
        self.in_flight[e.track] = TrackState(e.track, e.time, list(e.modules))

    def _on_track_decoded(self, e: ev.TrackDecoded) -> None:
        self.decode.done += 1
        self.decode.wall_seconds += e.wall_seconds
        for source, message in e.errors.items():
            self.add_log("warning", "decode", f"{e.track}: {source}: {message}", track=e.track, at=e.time)

    def _on_track_finished(self, e: ev.TrackFinished) -> None:
        self.tracks_finished += 1
        self.tracks_failed += bool(e.failed)
        self.audio_done += e.audio_seconds
        self.in_flight.pop(e.track, None)
        self.latest_track = e.track
        self.latest_outcome = {m: "ok" for m in e.ok}
        for m in e.failed:
            last = next((x for x in reversed(self.errors.get(e.track, [])) if x.module == m), None)
            self.latest_outcome[m] = last.message.split(":", 1)[0] if last else "failed"

    def _on_module_started(self, e: ev.ModuleStarted) -> None:
        row = self.modules.get(e.module)
        if row is not None and (e.track, e.module) not in self._active:
            row.running += 1
        self._active.add((e.track, e.module))
        track = self.in_flight.get(e.track)
        if track is not None:
            track.progress[e.module] = (0.0, "")

    def _on_module_progress(self, e: ev.ModuleProgress) -> None:
        track = self.in_flight.get(e.track)
        if track is not None:
            track.progress[e.module] = (e.fraction, e.stage)

    def _end_request(self, track: str, module: str) -> None:
        row = self.modules.get(module)
        state = self.in_flight.get(track)
        if state is not None:
            state.finished.add(module)
            state.progress.pop(module, None)
        if (track, module) in self._active:
            self._active.discard((track, module))
            if row is not None:
                row.running -= 1

    def _on_module_finished(self, e: ev.ModuleFinished) -> None:
        self._end_request(e.track, e.module)
        row = self.modules.get(e.module)
        if row is not None:
            row.done += 1
            row.audio_seconds += e.audio_seconds
            row.wall_seconds += e.wall_seconds
            row.cpu_seconds += e.cpu_seconds
            row.last_rtf = e.realtime_factor or None

    def _on_module_failed(self, e: ev.ModuleFailed) -> None:
        retry = e.kind in RETRIED_KINDS and e.attempt == 1
        self._end_request(e.track, e.module)
        if retry:
            self.add_log("warning", e.module, f"{e.kind}: {e.message}", track=e.track, at=e.time)
            return
        row = self.modules.get(e.module)
        if row is not None:
            row.failed += 1
            row.last_error = f"{e.kind}: {e.message}"
            if "worker failed to start" in e.message:
                row.unavailable = e.message
        entry = self.add_log("error", e.module, f"{e.kind}: {e.message}", track=e.track, at=e.time)
        self.errors.setdefault(e.track, []).append(entry)

    def _on_worker_started(self, e: ev.WorkerStarted) -> None:
        row = self.decode if e.module == "decode" else self.modules.get(e.module)
        self.worker_module[e.pid] = e.module
        if row is not None and e.ready:
            row.pids.add(e.pid)
        elif row is not None:
            row.unavailable = "not ready"
        self.add_log("info", e.module, f"worker {e.pid} started on {e.device} in {e.startup_seconds:.2f} s"
                     + ("" if e.ready else " but is not ready"), pid=e.pid, at=e.time)

    def _on_worker_exited(self, e: ev.WorkerExited) -> None:
        row = self.decode if e.module == "decode" else self.modules.get(e.module)
        if row is not None:
            row.pids.discard(e.pid)
        level = "info" if e.reason == "shutdown" else "warning"
        self.add_log(level, e.module, f"worker {e.pid} exited ({e.reason}, code {e.returncode})",
                     pid=e.pid, at=e.time)

    def _on_worker_log(self, e: ev.WorkerLog) -> None:
        self.add_log("stderr", e.module, e.line, pid=e.pid, at=e.time)

    def _on_warning(self, e: ev.Warning) -> None:
        row = self.modules.get(e.module)
        if row is not None and row.unavailable == "not ready":
            row.unavailable = e.message  # the worker's reason (model missing + the fetch command)
        self.add_log("warning", e.module, e.message, track=e.track, at=e.time)

    def _on_store_problem(self, e: ev.StoreProblem) -> None:
        self.add_log("error", "store", e.message, track=e.track, at=e.time)

    # -- controls the view reflects --------------------------------------------------------------
    def set_paused(self, paused: bool) -> None:
        now = self.clock()
        if paused and not self.paused:
            self._paused_since = now
        elif not paused and self.paused and self._paused_since is not None:
            self._paused_total += now - self._paused_since
            self._paused_since = None
        self.paused = paused
        self.version += 1

    # -- derived numbers --------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.started_at is not None and self.finished_at is None

    def units(self) -> tuple[int, int]:
        """(module-track requests finished, planned): the finest measure of progress."""
        done = sum(r.finished for r in self.modules.values())
        return done, sum(r.planned for r in self.modules.values())

    def elapsed(self, now: float | None = None) -> float:
        """Seconds the run has been working (pauses excluded)."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at or (self.clock() if now is None else now)
        paused = self._paused_total + ((end - self._paused_since) if self._paused_since else 0.0)
        return max(0.0, end - self.started_at - paused)

    def eta_seconds(self, now: float | None = None) -> float | None:
        """Seconds left at the pace so far; None until a request has finished or when paused."""
        done, total = self.units()
        elapsed = self.elapsed(now)
        if done == 0 or elapsed <= 0 or self.paused or not self.running:
            return None
        return (total - done) * elapsed / done

    def filtered_log(self, min_level: str = "info", module: str = "") -> list[LogEntry]:
        floor = LEVELS.index(min_level)
        return [e for e in self.log if LEVELS.index(e.level) >= floor and (not module or e.module == module)]

    def log_around(self, entry: LogEntry, before: int = 8, after: int = 3) -> list[LogEntry]:
        """Log lines of the same module around ``entry`` (its worker's stderr included)."""
        same = [e for e in self.log if e.module == entry.module]
        index = next((i for i, e in enumerate(same) if e.seq == entry.seq), None)
        if index is None:
            return [entry]
        return same[max(0, index - before): index + after + 1]

    def worker_pids(self) -> list[int]:
        pids = [p for row in self.modules.values() for p in row.pids]
        return sorted(pids + list(self.decode.pids))

    # -- readings from the probes -------------------------------------------------------------------
    def note_gpu(self, snapshot: GpuSnapshot) -> None:
        self.gpu = snapshot
        for device in snapshot.devices:
            history = self.gpu_history.setdefault(device.index, deque(maxlen=HISTORY))
            if device.vram_used is not None and device.vram_total:
                history.append(device.vram_used / device.vram_total)
        for row in self.modules.values():
            held = sum(snapshot.processes[p].vram for p in row.pids if p in snapshot.processes)
            if any(p in snapshot.processes for p in row.pids):
                row.peak_vram = max(row.peak_vram or 0, held)
        self.version += 1

    def note_host(self, reading: HostReading) -> None:
        self.host = reading
        if reading.cpu_percent is not None:
            self.cpu_history.append(reading.cpu_percent / 100.0)
        self.version += 1
