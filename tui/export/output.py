"""An export's output folder, written incrementally.

``mirdeck-export.json`` in the folder records the schema version, the format, a digest of the
options (template, description key, ...) and a digest per file written. A re-run writes a file
only when its digest changed (or the file went missing), removes the files of tracks that left
the dataset, and never touches a file it did not write: a folder that is not empty and holds no
such record is refused.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import orjson

SCHEMA_VERSION = 1
STATE_FILE = "mirdeck-export.json"


class ExportError(Exception):
    """The export cannot go on (output folder refused, consumer library missing, ...)."""


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Output:
    def __init__(self, root: Path, fmt: str, options_text: str):
        self.root = Path(root)
        self.format = fmt
        self.options_digest = digest(f"{SCHEMA_VERSION}\n{fmt}\n{options_text}".encode())
        self.previous: dict[str, str] = {}
        self.previous_state: dict[str, Any] = {}  # the last run's record, when its options were these
        self.extra: dict[str, Any] = {}  # what a format keeps for its next run (the shards' placement)
        self.current: dict[str, str] = {}
        self.written: list[str] = []
        self.unchanged = 0
        self.removed: list[str] = []
        self._made: set[Path] = set()
        state_path = self.root / STATE_FILE
        if self.root.exists():
            if not self.root.is_dir():
                raise ExportError(f"{self.root}: exists and is not a folder")
            if state_path.exists():
                try:
                    state = orjson.loads(state_path.read_bytes())
                except orjson.JSONDecodeError as exc:
                    raise ExportError(f"{state_path}: not valid JSON ({exc}); remove the folder to export afresh")
                if state.get("format") != fmt:
                    raise ExportError(f"{self.root}: holds a {state.get('format')!r} export, not {fmt!r}; "
                                      "choose another --out")
                if state.get("options_digest") == self.options_digest:
                    self.previous = dict(state.get("files", {}))
                    self.previous_state = state
                else:  # schema, template or options changed: every file is rewritten
                    self.previous = {k: "" for k in state.get("files", {})}
            elif any(self.root.iterdir()):
                raise ExportError(f"{self.root}: folder is not empty and holds no mirdeck export "
                                  f"({STATE_FILE}); choose an empty or new --out")
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def is_current(self, rel: str, key: str) -> bool:
        """True when ``rel`` was written from the same ``key`` digest and is still there;
        records it as part of this export either way."""
        self.current[rel] = key
        same = self.previous.get(rel) == key and os.path.lexists(self.root / rel)
        if same:
            self.unchanged += 1
        else:
            self.written.append(rel)
        return same

    def _folder(self, path: Path) -> None:
        if path.parent not in self._made:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made.add(path.parent)

    def write(self, rel: str, data: bytes) -> bool:
        """Write ``data`` to ``rel`` unless the same bytes are there; True when written.

        A file that is there is replaced atomically (a reader never sees half of it); a new one
        is written in place, which is as safe and half the system calls: if the export dies
        midway, the state file does not list it yet and the next run writes it again."""
        if self.is_current(rel, digest(data)):
            return False
        path = self.root / rel
        self._folder(path)
        if os.path.lexists(path):
            write_atomic(path, data)
        else:
            with open(path, "wb") as fh:
                fh.write(data)
        return True

    def link(self, rel: str, target: Path) -> bool:
        """A symbolic link ``rel`` to ``target`` (the audio stays where it is)."""
        key = digest(f"link:{os.path.abspath(target)}".encode())
        path = self.root / rel
        if self.is_current(rel, key) and path.is_symlink():
            return False
        self._folder(path)
        if os.path.lexists(path):
            path.unlink()
        os.symlink(os.path.abspath(target), path)
        return True

    def finish(self, extra: dict[str, Any]) -> None:
        """Remove what this export no longer holds, then record the state."""
        for rel in sorted(set(self.previous) - set(self.current)):
            path = self.root / rel
            if os.path.lexists(path):
                path.unlink()
                self.removed.append(rel)
            parent = path.parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
        state = {"schema_version": SCHEMA_VERSION, "format": self.format, "options_digest": self.options_digest,
                 **extra, **self.extra, "files": dict(sorted(self.current.items()))}
        write_atomic(self.root / STATE_FILE, orjson.dumps(state, option=orjson.OPT_INDENT_2) + b"\n")
