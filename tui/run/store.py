"""The ``.INFO`` store: one JSON object per track, updated by read-merge-write under a lock.

Writes go to a unique temporary file in the same folder, are fsynced and renamed over the old
file, so a reader sees the old or the new file and never half of one. A file that does not parse
is never overwritten: it is moved aside and the caller is told where.
"""
from __future__ import annotations

import fcntl
import math
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import orjson

PROVENANCE_KEY = "_mirdeck"


class StoreError(Exception):
    """The .INFO could not be written (read-only folder, full disk, ...); nothing was changed."""


class InfoCorrupt(Exception):
    """The .INFO exists but is not a JSON object."""


@dataclass
class MergeOutcome:
    path: Path
    moved_aside: Path | None = None
    reason: str = ""


def info_path(folder: Path) -> Path:
    return folder / f"{folder.name}.INFO"


def read_info(path: Path) -> dict[str, Any]:
    """The .INFO as a dict; ``{}`` if there is none; ``InfoCorrupt`` if it does not parse."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InfoCorrupt(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InfoCorrupt(f"{path}: holds a JSON {type(data).__name__}, not an object")
    return data


def read_info_lenient(path: Path) -> tuple[dict[str, Any], str]:
    """Like ``read_info`` but never raises: a broken file reads as empty plus a reason."""
    try:
        return read_info(path), ""
    except InfoCorrupt as exc:
        return {}, str(exc)
    except OSError as exc:
        return {}, f"{path}: cannot read ({exc.strerror})"


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Exclusive lock over a track folder's .INFO, held on the folder itself (no lock files)."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def find_non_finite(value: Any, where: str = "") -> str | None:
    """Path of the first NaN/infinity in a JSON-like value: JSON cannot hold them honestly."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where or "<value>"
    if isinstance(value, dict):
        for k, v in value.items():
            found = find_non_finite(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            found = find_non_finite(v, f"{where}[{i}]")
            if found:
                return found
    return None


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        target = path.with_name(f"{path.name}.corrupt-{stamp}" + (f"-{n}" if n else ""))
        if not target.exists():
            os.rename(path, target)
            return target
    raise StoreError(f"{path}: cannot find a free name to move the broken file aside")


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    payload = orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"
    folder = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise StoreError(f"{folder}: cannot write {path.name} ({exc.strerror})") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise StoreError(f"{path}: write failed ({exc.strerror})") from exc
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def stale_keys(block: dict[str, Any], module: str, features: dict[str, Any]) -> list[str]:
    """Keys ``module`` wrote last time (its provenance's ``keys``) that it does not write now (a
    stem removed, a head dropped), except those another module's provenance also lists. Keys
    nobody's provenance lists (a person's own) are never touched."""
    previous = block.get(module)
    if not isinstance(previous, dict) or not isinstance(previous.get("keys"), list):
        return []
    others = {k for name, prov in block.items() if name != module and isinstance(prov, dict)
              and isinstance(prov.get("keys"), list) for k in prov["keys"]}
    return [k for k in previous["keys"] if isinstance(k, str) and k not in features and k not in others
            and not k.startswith("_")]


def merge(folder: Path, module: str, *, features: dict[str, Any] | None,
          provenance: dict[str, Any]) -> MergeOutcome:
    """Merge one module's outcome into the track's .INFO.

    On success (``features`` given) its keys are set and its provenance replaced, and the keys it
    wrote last time but not now are removed (see ``stale_keys``). On failure
    (``features`` None) earlier good values of that module are kept, and the error is recorded
    as ``last_error`` beside their provenance, so a later failed run never leaves less behind.
    """
    path = info_path(folder)
    if features is not None:
        bad = find_non_finite(features)
        if bad:
            raise ValueError(f"{module} produced a non-finite value for {bad}")
        reserved = [k for k in features if k.startswith("_")]
        if reserved:
            raise ValueError(f"{module} produced reserved keys {reserved}")
    outcome = MergeOutcome(path)
    try:
        lock = locked(folder)
        lock.__enter__()
    except OSError as exc:
        raise StoreError(f"{folder}: cannot open track folder ({exc.strerror})") from exc
    try:
        try:
            data = read_info(path)
        except InfoCorrupt as exc:
            outcome.moved_aside = _move_aside(path)
            outcome.reason = str(exc)
            data = {}
        block = data.get(PROVENANCE_KEY)
        if not isinstance(block, dict):
            block = {}
        if features is not None:
            for key in stale_keys(block, module, features):
                data.pop(key, None)
            data.update(features)
            block[module] = provenance
        else:
            previous = block.get(module)
            if isinstance(previous, dict) and previous.get("status") == "ok":
                block[module] = {**previous, "last_error": provenance}
            else:
                block[module] = provenance
        # Provenance goes last so the features read first when a person opens the file.
        data.pop(PROVENANCE_KEY, None)
        data[PROVENANCE_KEY] = block
        _write_atomic(path, data)
    finally:
        lock.__exit__(None, None, None)
    return outcome
