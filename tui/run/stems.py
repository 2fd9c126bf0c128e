"""Stems that a module writes (``BackendSpec.provides``): where they go, which exist, where they came from.

A stem file either came with the dataset (*supplied*) or was written by a providing module such as
``stems`` (*separated*). The parent decides where separated stems go, so that the plan, the engine and
later runs agree without asking the worker: into the track folder under the names the dataset scan
reads (``drums.flac`` …), or, with the provider's option ``cache_dir``, into
``<cache_dir>/<folder name>-<hash of the folder's path>/`` — found there by every later run with the
same option, even when the dataset is read-only and no .INFO could record them.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable

from backends.spec import STEMS, BackendSpec
from tui.run.dataset import TrackFolder
from tui.run.store import PROVENANCE_KEY

SEPARATED, SUPPLIED = "separated", "supplied"
OUTPUT_SUFFIX = ".flac"


def providers(specs: dict[str, BackendSpec], modules: Iterable[str] | None = None) -> dict[str, str]:
    """Stem -> the module that provides it (among ``modules`` when given)."""
    names = list(specs) if modules is None else list(modules)
    return {stem: name for name in names for stem in specs[name].provides}


def cache_dir_of(options: dict[str, Any]) -> Path | None:
    value = options.get("cache_dir")
    if value in (None, ""):
        return None
    return Path(os.path.expanduser(str(value))).resolve()


def cache_folder(cache_dir: Path, track_folder: Path) -> Path:
    """Where a track's separated stems go in the cache: its name, for people, and a hash of its
    absolute path, so that two datasets with a folder of the same name never share stems."""
    digest = hashlib.sha256(str(track_folder.resolve()).encode("utf-8")).hexdigest()[:12]
    return cache_dir / f"{track_folder.name}-{digest}"


def attach_cached(track: TrackFolder, cache_dir: Path | None) -> None:
    """Add the stems the cache holds for this track to those of its folder (the folder's win)."""
    if cache_dir is None:
        return
    folder = cache_folder(cache_dir, track.folder)
    for stem in STEMS:
        path = folder / f"{stem}{OUTPUT_SUFFIX}"
        if stem not in track.stems and path.is_file():
            track.stems[stem] = path


def output_path(track: TrackFolder, stem: str, cache_dir: Path | None) -> Path:
    folder = track.folder if cache_dir is None else cache_folder(cache_dir, track.folder)
    return folder / f"{stem}{OUTPUT_SUFFIX}"


def recorded_name(track_folder: Path, path: Path) -> str:
    """A stem's path as provenance keeps it: relative inside the track folder, else absolute."""
    try:
        return str(path.relative_to(track_folder))
    except ValueError:
        return str(path)


def origins(track: TrackFolder, info: dict[str, Any], specs: dict[str, BackendSpec],
            cache_dirs: dict[str, Path | None] | None = None) -> dict[str, str]:
    """Each stem the track has now: ``separated`` or ``supplied``.

    Separated means a provider wrote it: it lies in that provider's cache, or the provider's
    provenance lists this very file with the size it wrote (a file the user put in its place since
    counts as supplied, and is never overwritten).
    """
    cache_dirs = cache_dirs or {}
    block = info.get(PROVENANCE_KEY)
    block = block if isinstance(block, dict) else {}
    found: dict[str, str] = {}
    for stem, path in track.stems.items():
        origin = SUPPLIED
        provider = providers(specs).get(stem)
        if provider is not None:
            cache_dir = cache_dirs.get(provider)
            if cache_dir is not None and path.parent == cache_folder(cache_dir, track.folder):
                origin = SEPARATED
            else:
                prov = block.get(provider)
                record = (prov.get("stems") or {}).get(stem) if isinstance(prov, dict) else None
                if (isinstance(record, dict) and record.get("origin") == SEPARATED
                        and record.get("file") == recorded_name(track.folder, path)
                        and _size(path) == record.get("bytes")):
                    origin = SEPARATED
        found[stem] = origin
    return found


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def stems_used(spec: BackendSpec, info: dict[str, Any]) -> set[str]:
    """The stems a module read when it last succeeded on this track.

    Its provenance lists them (``stems``); a result written before that record existed tells by
    its keys (``lufs_drums`` means loudness read the drums)."""
    block = info.get(PROVENANCE_KEY)
    prov = block.get(spec.name) if isinstance(block, dict) else None
    if isinstance(prov, dict) and isinstance(prov.get("stems"), dict):
        return set(prov["stems"])
    return {stem for stem in spec.stems_read()
            if any(key.endswith(f"_{stem}") and spec.produces(key) for key in info)}


def changed_since_read(spec: BackendSpec, info: dict[str, Any], track: TrackFolder,
                       coming: Iterable[str] = ()) -> bool:
    """Whether a done stem reader is out of date with the stems: one it can read now is not among
    those it read, one it read is separated again in this run (``coming``), or one it read is
    another file now (its size differs from the one recorded: separated again by an earlier run,
    or replaced by the user). A stem that went away does not count: what the reader wrote from it
    stays until the reader runs again."""
    used = stems_used(spec, info)
    readable = set(spec.stems_read())
    if not ({s for s in readable if s in track.stems or s in set(coming)} <= used):
        return True
    if readable & used & set(coming):
        return True
    block = info.get(PROVENANCE_KEY)
    prov = block.get(spec.name) if isinstance(block, dict) else None
    recorded = prov.get("stem_bytes") if isinstance(prov, dict) else None
    if not isinstance(recorded, dict):
        return False  # recorded before sizes were: trusted, as it was before
    for stem, size in recorded.items():
        path = track.stems.get(stem)
        now = _size(path) if path is not None else None
        if now is not None and now != size:
            return True
    return False

