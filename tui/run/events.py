"""Typed events the engine emits. Every view (dashboard, headless printer, run log) consumes these.

Each event serialises to one flat JSON object with an ``event`` name and a wall-clock ``time``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Event:
    time: float = field(default_factory=time.time, kw_only=True)

    @property
    def name(self) -> str:
        return _NAMES[type(self)]

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.name, **asdict(self)}


@dataclass
class RunStarted(Event):
    dataset: str
    profile: str
    modules: list[str]
    tracks: int
    planned: dict[str, int]  # module -> tracks to process
    skipped: dict[str, int]  # module -> tracks already done
    log_dir: str
    scan_problems: list[str] = field(default_factory=list)
    not_applicable: dict[str, dict[str, int]] = field(default_factory=dict)  # module -> why -> tracks


@dataclass
class RunFinished(Event):
    stopped: bool
    wall_seconds: float
    summary: dict[str, dict[str, float | None]]
    # Track -> the planned modules that did not run on it (a stop came first); empty when the
    # run went through. Failures are not in here: they ran, and say so in ``summary``.
    left: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class TrackStarted(Event):
    track: str
    modules: list[str]


@dataclass
class TrackFinished(Event):
    track: str
    ok: list[str]
    failed: list[str]
    audio_seconds: float
    not_run: list[str] = field(default_factory=list)  # a stop came before these were sent


@dataclass
class ModuleStarted(Event):
    track: str
    module: str
    worker_pid: int


@dataclass
class ModuleProgress(Event):
    track: str
    module: str
    fraction: float
    stage: str


@dataclass
class ModuleFinished(Event):
    track: str
    module: str
    audio_seconds: float
    wall_seconds: float
    realtime_factor: float
    keys: int
    cpu_seconds: float = 0.0
    # Text generation (the Flamingo back ends): tokens the track's answers hold and the seconds their
    # decoding took, as the module recorded them in its provenance's ``decode``; 0 for other modules.
    generated_tokens: int = 0
    decode_seconds: float = 0.0


@dataclass
class ModuleFailed(Event):
    track: str
    module: str
    kind: str
    message: str
    attempt: int = 1


@dataclass
class ModuleSkipped(Event):
    module: str
    count: int


@dataclass
class WorkerStarted(Event):
    module: str
    pid: int
    device: str
    ready: bool
    startup_seconds: float
    node: str = ""  # the cluster node it runs on (--cluster); empty on the local scheduler


@dataclass
class WorkerExited(Event):
    module: str
    pid: int
    returncode: int | None
    reason: str  # "shutdown", "crash", "killed", "crash_at_exit", "node_lost"
    node: str = ""


@dataclass
class WorkerLog(Event):
    module: str
    pid: int
    line: str


@dataclass
class Warning(Event):  # noqa: A001 - the event's name in the stream is "warning"
    message: str
    track: str = ""
    module: str = ""


@dataclass
class StoreProblem(Event):
    track: str
    message: str


_NAMES: dict[type[Event], str] = {cls: "".join("_" + c.lower() if c.isupper() else c for c in cls.__name__).lstrip("_")
          for cls in (RunStarted, RunFinished, TrackStarted, TrackFinished, ModuleStarted,
                      ModuleProgress, ModuleFinished, ModuleFailed, ModuleSkipped, WorkerStarted,
                      WorkerExited, WorkerLog, Warning, StoreProblem)}


@dataclass
class TrackDecoded(Event):
    track: str
    sources: dict[str, list[str]]  # source -> sample rates decoded ("native" or Hz)
    wall_seconds: float
    errors: dict[str, str] = field(default_factory=dict)


_NAMES[TrackDecoded] = "track_decoded"


@dataclass
class NodeStatus(Event):
    """One cluster node as the driver last saw it (--cluster only; sent every few seconds and
    when a node is lost)."""

    node: str  # Ray's node id, shortened
    address: str
    alive: bool
    cpus: float
    cpu_percent: float | None = None
    ram_used_gb: float | None = None
    ram_total_gb: float | None = None
    gpus: float = 0.0
    gpu_memory_used_gb: float | None = None  # over the node's devices, GiB (None: no GPU reading there)
    gpu_memory_total_gb: float | None = None
    workers: int = 0
    tracks_in_flight: int = 0
    tracks_done: int = 0
    driver: bool = False  # the node the driver (this mirdeck) is attached to: losing it ends the run


_NAMES[NodeStatus] = "node_status"


def from_dict(data: dict[str, Any]) -> Event:
    """The typed event of one ``to_dict()`` object (read back from the run log or a run service's
    socket). Fields a newer engine added are ignored, so an older client still reads the stream."""
    cls = _BY_NAME.get(str(data.get("event", "")))
    if cls is None:
        raise ValueError(f"unknown event {data.get('event')!r}")
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in known})


_BY_NAME: dict[str, type[Event]] = {name: cls for cls, name in _NAMES.items()}
