"""The model manifest and the fetch step: download with progress, resume, verify, install atomically.

Two kinds of entry: one file (``file`` + ``url``), or a Hugging Face checkpoint folder (``folder`` +
``repo`` + ``files``), fetched file by file through the same single-file path into the folder the
transformers back end loads from.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tui import paths

CHUNK = 1 << 20
COMMIT = re.compile(r"[0-9a-f]{40}")
SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(ValueError):
    pass


class FetchError(Exception):
    def __init__(self, message: str, *, http_status: int | None = None):
        super().__init__(message)
        self.http_status = http_status


@dataclass(frozen=True)
class FolderFile:
    """One file of a checkpoint folder; ``size``/``sha256`` only where someone has verified them."""

    path: str
    size: int | None = None
    sha256: str | None = None
    optional: bool = False
    """Fetched when the repository has it; a 404 skips it (file lists of repositories drift)."""
    source: str = ""
    """Where ``size``/``sha256`` were read (a URL or a citation); shown by ``mirdeck models``."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    backend: str
    file: str = ""
    url: str = ""
    licence: str = ""
    size: int | None = None
    sha256: str | None = None
    description: str = ""
    source: str = ""
    """Where ``size``/``sha256`` were read (a URL or a citation); shown by ``mirdeck models``."""
    # -- checkpoint folders (Hugging Face repositories) --
    folder: str = ""
    """Folder under the weights folder; set for folder entries instead of ``file``/``url``."""
    repo: str = ""
    """``<owner>/<name>`` on Hugging Face."""
    revision: str = "main"
    files: tuple[FolderFile, ...] = ()
    shards_from: str = ""
    """A ``*.safetensors.index.json`` among ``files``: the shards its weight map names are fetched too."""
    base_url: str = "https://huggingface.co"

    @property
    def is_folder(self) -> bool:
        return bool(self.folder)

    def path(self, directory: Path | None = None) -> Path:
        return (directory or paths.models_dir()) / (self.folder or self.file)

    @property
    def revision_pinned(self) -> bool:
        """A commit hash, not a branch or tag name that can move under the pinned checksums."""
        return bool(COMMIT.fullmatch(self.revision))

    def file_url(self, name: str) -> str:
        """``<base>/<repo>/resolve/<revision>/<file>``: Hugging Face's download URL of one file."""
        return f"{self.base_url.rstrip('/')}/{self.repo}/resolve/{self.revision}/{name}"


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
        required = {"folder", "repo", "files", "backend"} if "folder" in table else {"file", "url", "backend"}
        missing = required - set(table)
        if unknown or missing:
            problem = f"unknown fields {sorted(unknown)}" if unknown else f"missing fields {sorted(missing)}"
            raise ManifestError(f"{path}: [model.{name}]: {problem}")
        if "folder" in table:
            try:
                table = {**table, "files": tuple(FolderFile(**f) for f in table["files"])}
            except TypeError as exc:
                raise ManifestError(f"{path}: [model.{name}] files: each needs `path` and may have "
                                    f"`size`, `sha256`, `optional` ({exc})") from None
            listed = {f.path for f in table["files"]}
            if table.get("shards_from") and table["shards_from"] not in listed:
                raise ManifestError(f"{path}: [model.{name}]: shards_from {table['shards_from']!r} "
                                    "must be one of its files")
        entry = ModelEntry(name=name, **table)
        for label, size, sha in [("", entry.size, entry.sha256)] + [
                (f" file {f.path!r}", f.size, f.sha256) for f in entry.files]:
            if sha is not None and not SHA256.fullmatch(sha):
                raise ManifestError(f"{path}: [model.{name}]{label}: sha256 must be 64 lower-case hex digits, "
                                    f"not {sha!r}")
            if size is not None and (not isinstance(size, int) or size <= 0):
                raise ManifestError(f"{path}: [model.{name}]{label}: size must be a positive byte count, "
                                    f"not {size!r}")
        entries[name] = entry
    return entries


def folder_files(entry: ModelEntry, directory: Path | None = None) -> list[FolderFile]:
    """The files of a folder entry: its list, plus the shards its installed index names."""
    files = list(entry.files)
    if entry.shards_from:
        index = entry.path(directory) / entry.shards_from
        if index.is_file():
            listed = {f.path for f in files}
            for shard in shard_names(index):
                if shard not in listed:
                    files.append(FolderFile(shard))
    return files


def shard_names(index: Path) -> list[str]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise FetchError(f"{index}: not a safetensors index (no weight_map): {exc}") from None
    return sorted(set(weight_map.values()))


def status(entry: ModelEntry, directory: Path | None = None) -> tuple[bool, str]:
    """Whether the file (or every file of the folder) is installed, and a short word on what is there."""
    if entry.is_folder:
        return _folder_status(entry, directory)
    return _file_status(entry.path(directory), entry.size)


def _file_status(path: Path, size_expected: int | None) -> tuple[bool, str]:
    if not path.is_file():
        partial = path.with_name(path.name + ".part")
        if partial.exists():
            return False, f"partial download ({partial.stat().st_size:,} bytes; fetch resumes it)"
        return False, "not installed"
    size = path.stat().st_size
    if size_expected is not None and size != size_expected:
        # Under its final name, so put there by hand (a fetch renames only what matches): used as it
        # is, and said so. Refusing it would lock out a file someone chose, e.g. a newer upstream one.
        return True, (f"{size:,} bytes, not the {size_expected:,} pinned: not the manifest's file "
                      f"(mirdeck models fetch replaces it)")
    return True, f"{size:,} bytes"


def _is_complete(path: Path, size_expected: int | None) -> bool:
    """Installed and of the pinned size: a folder fetch keeps it, anything else is fetched again."""
    return path.is_file() and (size_expected is None or path.stat().st_size == size_expected)


def _folder_status(entry: ModelEntry, directory: Path | None) -> tuple[bool, str]:
    folder = entry.path(directory)
    try:
        files = folder_files(entry, directory)
    except FetchError as exc:
        return False, f"{exc}: fetch again"
    problems, total, installed = [], 0, 0
    for f in files:
        ok, word = _file_status(folder / f.path, f.size)
        if ok:
            total += (folder / f.path).stat().st_size
            installed += 1
        elif not (f.optional and word == "not installed"):
            problems.append(f"{f.path}: {word}")
    if entry.shards_from and not (folder / entry.shards_from).is_file():
        problems.append("weight shards: not known until the index is fetched")
    if problems:
        return False, (f"{installed} of {len(files)} files installed ({'; '.join(problems[:2])}"
                       f"{' ...' if len(problems) > 2 else ''})")
    return True, f"{installed} files, {total:,} bytes"


def sha256_of(path: Path) -> str:
    return _digest_of(path).hexdigest()


def pinning(entry: ModelEntry, directory: Path | None = None) -> str:
    """How a fetch of ``entry`` is checked, in a few words: what ``mirdeck models`` shows."""
    if not entry.is_folder:
        return "sha256 pinned" if entry.sha256 else "size pinned" if entry.size is not None else "not pinned"
    try:
        files = folder_files(entry, directory)
    except FetchError:
        files = list(entry.files)
    hashed = sum(1 for f in files if f.sha256)
    shards = "" if not entry.shards_from or (entry.path(directory) / entry.shards_from).is_file() \
        else " + shards from the index"
    revision = (f"revision {entry.revision[:12]}" if entry.revision_pinned
                else f"revision {entry.revision!r} not pinned")
    if not hashed:
        return f"not pinned: no sha256 for its {len(files)} files{shards}, {revision}"
    return f"sha256 pinned for {hashed} of {len(files)} files{shards}, {revision}"


def verify_installed(entry: ModelEntry, directory: Path | None = None) -> list[tuple[Path, bool | None, str]]:
    """Hash what is installed against the pins: (file, ok, word) for every installed file; ok is
    None where nothing is pinned to check it against."""
    if entry.is_folder:
        folder = entry.path(directory)
        pairs = [(folder / f.path, f.size, f.sha256) for f in folder_files(entry, directory)]
    else:
        pairs = [(entry.path(directory), entry.size, entry.sha256)]
    results: list[tuple[Path, bool | None, str]] = []
    for path, size, sha in pairs:
        if not path.is_file():
            continue
        got_size = path.stat().st_size
        if size is not None and got_size != size:
            results.append((path, False, f"size {got_size:,} bytes, expected {size:,}"))
        elif sha:
            got = sha256_of(path)
            results.append((path, got == sha, "sha256 matches" if got == sha
                            else f"sha256 {got}, expected {sha}"))
        else:
            results.append((path, True, "size matches; no sha256 pinned") if size is not None
                           else (path, None, "nothing pinned to check it against"))
    return results


def fetch(entry: ModelEntry, *, directory: Path | None = None,
          progress: Callable[[int, int | None], None] | None = None, timeout: float = 60.0) -> Path:
    """Download ``entry`` into the weights folder; resumes a ``.part`` left by an earlier try.

    The file appears under its final name only after its size and sha256 (where the manifest
    gives them) are verified. A folder entry is fetched file by file the same way.
    """
    if entry.is_folder:
        return fetch_folder(entry, directory=directory, progress=progress, timeout=timeout)
    return _fetch_file(entry, directory=directory, progress=progress, timeout=timeout)


def fetch_folder(entry: ModelEntry, *, directory: Path | None = None,
                 progress: Callable[[int, int | None], None] | None = None, timeout: float = 60.0) -> Path:
    """Every file of a checkpoint folder, each through the single-file path (resume, size, sha256).

    Files already installed (under their final name, so complete and verified when they were
    fetched) are kept. ``shards_from`` is fetched before the shards it names. ``progress`` gets the
    bytes of this folder fetched so far and the total where every size is known.
    """
    folder = entry.path(directory)
    done_bytes = 0

    def one(f: FolderFile, total: int | None) -> None:
        nonlocal done_bytes
        single = ModelEntry(name=f"{entry.name}/{f.path}", backend=entry.backend,
                            file=f"{entry.folder}/{f.path}", url=entry.file_url(f.path), size=f.size,
                            sha256=f.sha256)
        target = single.path(directory)
        if _is_complete(target, f.size):
            done_bytes += target.stat().st_size
            return
        base = done_bytes
        report = (lambda done, _total: progress(base + done, total)) if progress else None
        try:
            _fetch_file(single, directory=directory, progress=report, timeout=timeout)
        except FetchError as exc:
            if f.optional and exc.http_status == 404:
                return
            raise
        done_bytes += target.stat().st_size

    listed = list(entry.files)
    first = [f for f in listed if f.path == entry.shards_from]
    known_total = sum(f.size for f in listed) if all(f.size is not None for f in listed) else None
    for f in first + [f for f in listed if f.path != entry.shards_from]:
        one(f, known_total if not entry.shards_from else None)
    if entry.shards_from:
        extra = [f for f in folder_files(entry, directory) if f.path not in {g.path for g in listed}]
        for f in extra:
            one(f, None)
    return folder


def _fetch_file(entry: ModelEntry, *, directory: Path | None = None,
                progress: Callable[[int, int | None], None] | None = None, timeout: float = 60.0) -> Path:
    """Stream into ``<file>.part``, hashing as the bytes arrive; rename to the final name only once
    size and sha256 (where pinned) match. A mismatch removes the ``.part``: nothing half-checked stays.
    """
    target = entry.path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    expected = entry.size
    have = partial.stat().st_size if partial.exists() else 0
    if expected is not None and have > expected:
        partial.unlink()  # longer than the pinned file can ever be: resuming it cannot help
        have = 0
    digest = _digest_of(partial) if have else hashlib.sha256()
    request = urllib.request.Request(entry.url, headers={"User-Agent": "mirdeck"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and expected is not None and have == expected:
            response = None  # the .part is already complete
        else:
            raise FetchError(f"{entry.name}: {entry.url} answered HTTP {exc.code} {exc.reason}",
                             http_status=exc.code) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise FetchError(f"{entry.name}: cannot reach {entry.url} ({getattr(exc, 'reason', exc)})") from exc
    if response is not None:
        with response:
            if have and response.status != 206:
                have, digest = 0, hashlib.sha256()  # the server ignored the range: start over
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else expected
            if expected is not None and total is not None and total != expected:
                _discard(partial)
                raise FetchError(f"{entry.name}: {entry.url} offers {total:,} bytes but the manifest pins "
                                 f"{expected:,} for {target}: not the pinned file; nothing was installed")
            done = have
            try:
                with open(partial, "ab" if have else "wb") as fh:
                    while chunk := response.read(CHUNK):
                        if expected is not None and done + len(chunk) > expected:
                            fh.close()
                            _discard(partial)
                            raise FetchError(f"{entry.name}: the server sent more than the {expected:,} bytes "
                                             f"pinned for {target}; the download was removed")
                        fh.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
                    fh.flush()
                    os.fsync(fh.fileno())
            except (OSError, urllib.error.URLError) as exc:
                raise FetchError(f"{entry.name}: transfer broke off after {done:,} bytes ({exc}); "
                                 f"run the same fetch again to resume") from exc
            # http.client ends a body cut short without an error; the server's own length tells. This
            # is the only completeness check for files whose size the manifest does not know.
            if length is not None and done < total:
                raise FetchError(f"{entry.name}: truncated transfer ({done:,} of {total:,} bytes); "
                                 f"run the same fetch again to resume")
    size = partial.stat().st_size
    if expected is not None and size < expected:
        raise FetchError(f"{entry.name}: truncated transfer ({size:,} of {expected:,} bytes); "
                         f"run the same fetch again to resume")
    if entry.sha256:
        actual = digest.hexdigest()
        if actual != entry.sha256.lower():
            _discard(partial)
            raise FetchError(f"{entry.name}: checksum mismatch for {target}: expected sha256 {entry.sha256}, "
                             f"got {actual} ({size:,} bytes from {entry.url}); the download was removed and "
                             f"nothing was installed")
    os.replace(partial, target)
    return target


def _digest_of(path: Path):
    """The running sha256 of what a resumed ``.part`` already holds, to continue with the new bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
