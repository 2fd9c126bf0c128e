"""The model manifest and the fetch step: download with progress, resume, verify, install atomically."""
from __future__ import annotations

import hashlib
import os
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tui import paths

CHUNK = 1 << 20


class ManifestError(ValueError):
    pass


class FetchError(Exception):
    pass


@dataclass(frozen=True)
class ModelEntry:
    name: str
    file: str
    url: str
    backend: str
    licence: str = ""
    size: int | None = None
    sha256: str | None = None
    description: str = ""

    def path(self, directory: Path | None = None) -> Path:
        return (directory or paths.models_dir()) / self.file


def load_manifest(path: Path | None = None) -> dict[str, ModelEntry]:
    path = path or paths.manifest_path()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: model manifest not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: TOML syntax error: {exc}") from None
    entries: dict[str, ModelEntry] = {}
    allowed = set(ModelEntry.__dataclass_fields__) - {"name"}
    for name, table in raw.get("model", {}).items():
        unknown = set(table) - allowed
        missing = {"file", "url", "backend"} - set(table)
        if unknown or missing:
            problem = f"unknown fields {sorted(unknown)}" if unknown else f"missing fields {sorted(missing)}"
            raise ManifestError(f"{path}: [model.{name}]: {problem}")
        entries[name] = ModelEntry(name=name, **table)
    return entries


def status(entry: ModelEntry, directory: Path | None = None) -> tuple[bool, str]:
    """Whether the file is installed, and a short word on what is there."""
    path = entry.path(directory)
    if not path.is_file():
        partial = path.with_name(path.name + ".part")
        if partial.exists():
            return False, f"partial download ({partial.stat().st_size:,} bytes; fetch resumes it)"
        return False, "not installed"
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        return False, f"wrong size ({size:,} bytes, expected {entry.size:,}): fetch again"
    return True, f"{size:,} bytes"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(entry: ModelEntry, *, directory: Path | None = None,
          progress: Callable[[int, int | None], None] | None = None, timeout: float = 60.0) -> Path:
    """Download ``entry`` into the weights folder; resumes a ``.part`` left by an earlier try.

    The file appears under its final name only after its size and sha256 (where the manifest
    gives them) are verified.
    """
    target = entry.path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(entry.url, headers={"User-Agent": "mirdeck"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and entry.size is not None and have == entry.size:
            response = None  # the .part is already complete
        else:
            raise FetchError(f"{entry.name}: {entry.url} answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"{entry.name}: cannot reach {entry.url} ({getattr(exc, 'reason', exc)})") from exc
    if response is not None:
        with response:
            if have and response.status != 206:
                have = 0  # the server ignored the range: start over
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else entry.size
            mode = "ab" if have else "wb"
            done = have
            try:
                with open(partial, mode) as fh:
                    while chunk := response.read(CHUNK):
                        fh.write(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
                    fh.flush()
                    os.fsync(fh.fileno())
            except (OSError, urllib.error.URLError) as exc:
                raise FetchError(f"{entry.name}: transfer broke off after {done:,} bytes ({exc}); "
                                 f"run the same fetch again to resume") from exc
    size = partial.stat().st_size
    expected = entry.size
    if expected is not None and size < expected:
        raise FetchError(f"{entry.name}: truncated transfer ({size:,} of {expected:,} bytes); "
                         f"run the same fetch again to resume")
    if expected is not None and size > expected:
        partial.unlink()
        raise FetchError(f"{entry.name}: got {size:,} bytes, more than the {expected:,} expected; "
                         f"the partial file was removed")
    if entry.sha256:
        actual = sha256_of(partial)
        if actual != entry.sha256.lower():
            partial.unlink()
            raise FetchError(f"{entry.name}: checksum mismatch (sha256 {actual}, expected "
                             f"{entry.sha256}); the download was removed")
    os.replace(partial, target)
    return target
