"""One run per dataset, and where each run in progress can be reached.

A run holds an exclusive ``flock`` on ``DATASET/.mirdeck/service.lock`` for its whole life (the
kernel drops it when the process dies, even by SIGKILL, so a stale lock cannot exist) and
describes itself in ``service.json`` beside it: pid, socket, run folder. A copy of that record in
the user's cache (``~/.cache/mirdeck/services/``) lets ``mirdeck status`` and ``mirdeck attach``
without a dataset find every run in progress. A record whose lock is free is stale and ignored.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from backends.pids import pid_alive
from tui import paths

LOCK_NAME = "service.lock"
RECORD_NAME = "service.json"


@dataclass
class ServiceRecord:
    dataset: str
    pid: int
    socket: str
    log_dir: str
    run_id: str
    detached: bool
    started_at: float
    profile: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceRecord:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _key(dataset: Path) -> str:
    return hashlib.sha1(str(dataset.resolve()).encode()).hexdigest()[:16]


def index_dir() -> Path:
    return paths.cache_dir() / "services"


def state_dir(dataset: Path, *, create: bool = False) -> Path:
    """``DATASET/.mirdeck`` where it can be written; else a folder in the user's cache named by the
    dataset's path (a read-only dataset can still be run; its lock is then per user). Only a run
    (``create=True``) makes the folder: looking for a run leaves the dataset as it is."""
    inside = dataset.resolve() / ".mirdeck"
    fallback = index_dir() / _key(dataset)
    if not create:
        if inside.is_dir() and os.access(inside, os.W_OK):
            return inside
        return fallback if fallback.is_dir() else inside
    try:
        inside.mkdir(exist_ok=True)
        if os.access(inside, os.W_OK):
            return inside
    except OSError:
        pass
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


class DatasetBusy(Exception):
    def __init__(self, dataset: Path, record: ServiceRecord | None):
        who = f"pid {record.pid}" if record else "another process"
        super().__init__(f"{dataset}: a run is already in progress ({who})")
        self.record = record


class DatasetLock:
    """The exclusive right to run on one dataset, held until ``release()`` or process death."""

    def __init__(self, dataset: Path):
        self.dataset = dataset.resolve()
        self.dir = state_dir(self.dataset, create=True)
        self.path = self.dir / LOCK_NAME
        self._fd: int | None = None
        self.record: ServiceRecord | None = None

    def acquire(self) -> DatasetLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DatasetBusy(self.dataset, read_record(self.dataset)) from None
        self._fd = fd
        return self

    @property
    def held(self) -> bool:
        return self._fd is not None

    def publish(self, record: ServiceRecord) -> None:
        """Write the record beside the lock and into the user's index (each atomically)."""
        self.record = record
        data = json.dumps(asdict(record), indent=1).encode()
        for target in (self.dir / RECORD_NAME, _index_path(self.dataset)):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)

    def release(self) -> None:
        if self._fd is None:
            return
        for target in (self.dir / RECORD_NAME, _index_path(self.dataset)):
            try:
                if self.record is None or _read(target).get("pid") == self.record.pid:
                    target.unlink()
            except (OSError, ValueError):
                pass
        os.close(self._fd)
        self._fd = None


def _index_path(dataset: Path) -> Path:
    return index_dir() / f"{_key(dataset)}.json"


def _read(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a run record")
    return data


def lock_is_held(dataset: Path) -> bool:
    """True while some process holds the dataset's run lock (this one included)."""
    path = state_dir(dataset) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken just now
    return False


def read_record(dataset: Path) -> ServiceRecord | None:
    """The record of the run in progress on ``dataset``, or None (no run, or a stale record)."""
    dataset = dataset.resolve()
    try:
        record = ServiceRecord.from_dict(_read(state_dir(dataset) / RECORD_NAME))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return record if lock_is_held(dataset) and pid_alive(record.pid) else None


def runs_in_progress() -> list[ServiceRecord]:
    """Every run of this user in progress, oldest first; stale index entries are removed."""
    found = []
    for path in sorted(index_dir().glob("*.json")):
        try:
            record = ServiceRecord.from_dict(_read(path))
        except (OSError, ValueError, TypeError, KeyError):
            continue
        if lock_is_held(Path(record.dataset)) and pid_alive(record.pid):
            found.append(record)
        elif time.time() - path.stat().st_mtime > 5:  # not one being written right now
            path.unlink(missing_ok=True)
    return sorted(found, key=lambda r: r.started_at)
