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
DECODE = "decode"
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
    vram: int | None = None
    """Bytes: what this module's workers (and the processes they started: llama-server) hold on the
    GPU at the latest reading; None when none of them holds any."""
    generated_tokens: int = 0
    decode_seconds: float = 0.0
    """Text generation (the Flamingo back ends): tokens generated in this run and the seconds their
    decoding took, summed over the finished tracks."""
    last_tokens_per_s: float | None = None
    """Decode tokens/s of the latest track that generated text."""
    last_error: str = ""
    recent_cost: float | None = None
    """Worker seconds per audio second, recent requests weighing most (the first request of a
    worker pays for warm-up: JIT compilation, caches)."""

    rtf = ModuleStats.realtime_factor

    @property
    def mean_tokens_per_s(self) -> float | None:
        """Decode tokens/s over the whole run: every track's tokens over every track's decode
        seconds (so a long answer weighs more than a short one, as it costs more)."""
        return self.generated_tokens / self.decode_seconds if self.decode_seconds > 0 else None

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
        self.left: dict[str, list[str]] = {}  # after a stop: track -> modules that did not run
        self.audio_done = 0.0
        self.in_flight: dict[str, TrackState] = {}
        self._active: dict[tuple[str, str], float] = {}  # (track, module) running now -> since
        self._first_request_at: float | None = None
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
        self.nodes: dict[str, ev.NodeStatus] = {}  # --cluster: each node as last reported
        self.nodes_version = 0
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
        self.decode.planned = self.tracks_total
        self.add_log("info", "", f"run started: {e.tracks} tracks, modules {', '.join(e.modules)}; "
                                 f"log in {e.log_dir}", at=e.time)
        for problem in e.scan_problems:
            self.add_log("warning", "", f"scan: {problem}", at=e.time)

    def _on_run_finished(self, e: ev.RunFinished) -> None:
        self.finished_at = e.time
        self.stopped = e.stopped
        self.left = dict(e.left)
        self.in_flight.clear()
        self._active.clear()
        for row in self.modules.values():
            row.running = 0
        self.decode.running = 0
        word = "stopped" if e.stopped else "finished"
        self.add_log("info", "", f"run {word} after {e.wall_seconds:,.1f} s", at=e.time)
        if self.left:
            runs = sum(len(m) for m in self.left.values())
            names = ", ".join(list(self.left)[:5]) + (" …" if len(self.left) > 5 else "")
            self.add_log("warning", "", f"not processed: {len(self.left)} track(s), {runs} module run(s): "
                                        f"{names} (list in {self.log_dir}/not-processed.txt)", at=e.time)

    def _on_node_status(self, e: ev.NodeStatus) -> None:
        before = self.nodes.get(e.node)
        self.nodes[e.node] = e
        self.nodes_version += 1
        if before is None:
            self.add_log("info", "", f"node {e.node} ({e.address}{', driver' if e.driver else ''}): "
                                     f"{e.cpus:g} CPU, {e.gpus:g} GPU", at=e.time)
        elif before.alive and not e.alive:
            self.add_log("warning", "", f"node {e.node} ({e.address}) lost: its tracks in flight go to the "
                                        "other nodes", at=e.time)

    def _on_module_skipped(self, e: ev.ModuleSkipped) -> None:
        self.add_log("info", e.module, f"{e.count} tracks already done, skipped", at=e.time)

    def _on_track_started(self, e: ev.TrackStarted) -> None:
        self.tracks_started += 1
        self.in_flight[e.track] = TrackState(e.track, e.time, list(e.modules))

    def _on_track_decoded(self, e: ev.TrackDecoded) -> None:
        self._end_request(e.track, DECODE)
        self.decode.done += 1
        self.decode.wall_seconds += e.wall_seconds
        for source, message in e.errors.items():
            self.add_log("warning", "decode", f"{e.track}: {source}: {message}", track=e.track, at=e.time)

    def _on_track_finished(self, e: ev.TrackFinished) -> None:
        self._end_request(e.track, DECODE)  # a decode that failed sends no track_decoded
        self.in_flight.pop(e.track, None)
        if e.not_run and not e.ok and not e.failed:
            return  # a stop came before any of its modules ran: not a finished track
        self.tracks_finished += 1
        self.audio_done += e.audio_seconds
        self.latest_track = e.track
        self.latest_outcome = {m: "ok" for m in e.ok}
        for m in e.failed:
            last = next((x for x in reversed(self.errors.get(e.track, [])) if x.module == m), None)
            self.latest_outcome[m] = last.message.split(":", 1)[0] if last else "failed"

    def _on_module_started(self, e: ev.ModuleStarted) -> None:
        row = self.decode if e.module == DECODE else self.modules.get(e.module)
        if row is not None and (e.track, e.module) not in self._active:
            row.running += 1
        self._active[(e.track, e.module)] = e.time
        if self._first_request_at is None and e.module != DECODE:
            self._first_request_at = e.time
        track = self.in_flight.get(e.track)
        if track is not None:
            track.progress[e.module] = (0.0, "")

    def _on_module_progress(self, e: ev.ModuleProgress) -> None:
        track = self.in_flight.get(e.track)
        if track is not None:
            track.progress[e.module] = (e.fraction, e.stage)

    def _end_request(self, track: str, module: str) -> None:
        row = self.decode if module == DECODE else self.modules.get(module)
        state = self.in_flight.get(track)
        if state is not None:
            if module != DECODE:  # ``finished`` counts the track's modules, not its decode
                state.finished.add(module)
            state.progress.pop(module, None)
        if (track, module) in self._active:
            del self._active[(track, module)]
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
            if e.generated_tokens:
                row.generated_tokens += e.generated_tokens
                row.decode_seconds += e.decode_seconds
                row.last_tokens_per_s = e.generated_tokens / e.decode_seconds if e.decode_seconds > 0 else None
            if e.audio_seconds > 0 and e.wall_seconds > 0:
                cost = e.wall_seconds / e.audio_seconds
                row.recent_cost = cost if row.recent_cost is None else 0.7 * row.recent_cost + 0.3 * cost

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

    @property
    def tracks_failed(self) -> int:
        """Tracks with a final failure so far: counted at the failure, not when the track ends
        (a track's other modules may run for minutes after one of them failed)."""
        return len(self.errors)

    def units(self) -> tuple[int, int]:
        """(module-track requests finished, planned): the finest measure of progress."""
        done = sum(r.finished for r in self.modules.values())
        return done, sum(r.planned for r in self.modules.values())

    def paused_seconds(self, now: float | None = None) -> float:
        """Seconds the run spent paused (the current pause included)."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at or (self.clock() if now is None else now)
        return self._paused_total + ((end - self._paused_since) if self._paused_since else 0.0)

    def elapsed(self, now: float | None = None) -> float:
        """Seconds the run has been working (pauses excluded)."""
        if self.started_at is None:
            return 0.0
        end = self.finished_at or (self.clock() if now is None else now)
        return max(0.0, end - self.started_at - self.paused_seconds(now))

    def eta_seconds(self, now: float | None = None) -> float | None:
        """Seconds left at the pace so far; None until a request has finished or when paused.

        Work is weighed by what it costs: each module's requests not yet sent count its measured
        worker seconds per audio second times the audio a track holds on average, and a request
        now running counts what it still has to go at that cost. So a slow module (timbral)
        weighs what it takes, not as much as a fast one (loudness) that finished its share
        early. The worker seconds spent so far (finished requests, and the running ones up to
        now) against the time since the first request was sent give the parallelism the run
        reaches. A
        module with no finished request yet is costed at the mean of the others, and at least
        the age of its oldest running request; before any module has a cost, every request
        weighs the same."""
        done, total = self.units()
        elapsed = self.elapsed(now)
        if done == 0 or elapsed <= 0 or self.paused or not self.running:
            return None
        at = self.clock() if now is None else now
        rows = list(self.modules.values())
        costs = {r.name: r.recent_cost for r in rows if r.recent_cost}
        audio_per_track = (self.audio_done / self.tracks_finished if self.tracks_finished
                           else sum(r.audio_seconds for r in rows) / max(1, sum(r.done for r in rows)))
        if not costs or audio_per_track <= 0:
            return (total - done) * elapsed / done
        mean_cost = sum(costs.values()) / len(costs)

        running = [(module, max(0.0, at - since)) for (_, module), since in self._active.items()
                   if module in self.modules]
        oldest: dict[str, float] = {}
        for module, age in running:
            oldest[module] = max(age, oldest.get(module, 0.0))

        def request_s(module: str) -> float:
            if module in costs:
                return costs[module] * audio_per_track
            # Not measured yet: at least as long as its oldest request has been running.
            return max(mean_cost * audio_per_track, oldest.get(module, 0.0))

        worked = sum(r.wall_seconds for r in rows) + sum(age for _, age in running)
        if worked <= 0:
            return (total - done) * elapsed / done
        queued = sum(max(0, r.planned - r.finished - r.running) * request_s(r.name) for r in rows)
        # A request past its expected time is not done: it costs at least a little more.
        going = sum(max(request_s(module) - age, 0.05 * request_s(module)) for module, age in running)
        # The parallelism reached since the first request was sent: the scan and the first
        # workers' imports (seconds, for TensorFlow or torch) before it did no module's work.
        lead_in = max(0.0, self._first_request_at - self.started_at) if self._first_request_at else 0.0
        return (queued + going) * max(elapsed - lead_in, 1e-6) / worked

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

    def text_generators(self) -> list[ModuleRow]:
        """The modules that reported generated tokens in this run (the Flamingo back ends)."""
        return [row for row in self.modules.values() if row.generated_tokens]

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
                row.vram = held
            else:
                row.vram = None
        self.version += 1

    def note_host(self, reading: HostReading) -> None:
        self.host = reading
        if reading.cpu_percent is not None:
            self.cpu_history.append(reading.cpu_percent / 100.0)
        self.version += 1
