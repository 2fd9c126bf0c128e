"""``stable-audio``: a ``custom_metadata_module`` for Stable Audio Tools, and optional WebDataset shards.

``custom_metadata.py`` defines ``get_custom_metadata(info, audio)``, which Stable Audio Tools
calls for every audio file it finds under a local dataset's ``path``: it returns ``prompt`` and
the track's scalar features from ``metadata.json`` beside it, looked up by ``info["relpath"]``
(relative to the dataset folder) or ``info["path"]``. Files that are not a track's mix (stems)
get ``{"__reject__": True}``, which makes Stable Audio Tools draw another file, so a stem is
never trained on with its mix's prompt.

With ``--shards``, ``shards/NNNNNN.tar`` hold ``<key>.flac`` + ``<key>.json`` pairs (WebDataset's
layout; the json holds the same prompt and features). A mix that is not FLAC is converted with
ffmpeg; the original file is never changed. A track keeps its shard and key from one export to
the next (the placement is kept in the export's state file), so a track added to the dataset
rewrites one shard, the last, not every shard after its place in the order.
"""
from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import orjson

from tui.export.common import ExportOptions, ExportSummary, exportable, prompt_of
from tui.export.features import LABEL_KEYS, TrackRecord
from tui.export.output import SCHEMA_VERSION, ExportError, Output, digest

HEAD_OF = {key: head for head, key in LABEL_KEYS.items()}
MODULE = "custom_metadata.py"
METADATA = "metadata.json"
SHARDS = "shards"

MODULE_TEXT = '''\
"""Stable Audio Tools custom metadata for a mirdeck export (schema {schema}); generated, do not edit.

Dataset config: {{"dataset_type": "audio_dir", "datasets": [{{"id": "...", "path": "{root}",
"custom_metadata_module": "{module}"}}]}}
"""
import json
import os

METADATA = {metadata!r}


def get_custom_metadata(info, audio, _table={{}}):
    if not _table:
        path = METADATA if os.path.exists(METADATA) else os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "metadata.json")
        with open(path, encoding="utf-8") as fh:
            _table.update(json.load(fh))
    index = _table["by_relpath"].get(str(info.get("relpath", "")).replace(os.sep, "/"))
    if index is None and info.get("path"):
        index = _table["by_path"].get(os.path.abspath(str(info["path"])))
    if index is None:
        return {{"__reject__": True}}
    return dict(_table["entries"][index])
'''


def metadata_entry(record: TrackRecord, options: ExportOptions) -> dict[str, Any]:
    """``prompt`` plus every scalar feature; label dicts become their labels, comma-separated."""
    entry: dict[str, Any] = {"prompt": prompt_of(record, options)}
    for key, value in record.features.items():
        if isinstance(value, (str, int, float, bool)):
            entry[key] = value
        elif isinstance(value, dict) and key in HEAD_OF:
            entry[key] = ", ".join(record.labels(HEAD_OF[key]))
    return entry


def _flac_bytes(path: Path) -> bytes:
    if path.suffix.lower() == ".flac":
        return path.read_bytes()
    # Into a file, not a pipe: ffmpeg writes the FLAC header's length only where it can seek back.
    with tempfile.TemporaryDirectory(prefix="mirdeck-flac-") as scratch:
        target = Path(scratch) / "audio.flac"
        try:
            done = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0",
                                   str(target)], capture_output=True, timeout=600)
        except FileNotFoundError as exc:
            raise ExportError("--shards needs ffmpeg to convert non-FLAC mixes (bin/setup installs it)") from exc
        if done.returncode != 0:
            raise ExportError(f"{path}: ffmpeg could not convert it to FLAC: "
                              f"{done.stderr.decode(errors='replace')[-300:]}")
        return target.read_bytes()


def _write_shard(out: Output, rel: str, members: list[tuple[str, TrackRecord, bytes]]) -> None:
    target = out.path(rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.tmp")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for key, record, meta in members:
            for name, data in ((f"{key}.flac", _flac_bytes(record.audio)), (f"{key}.json", meta)):
                item = tarfile.TarInfo(name)
                item.size, item.mtime, item.mode = len(data), 0, 0o644
                tar.addfile(item, io.BytesIO(data))
    os.replace(partial, target)


def place(names: list[str], previous: dict[str, list[int]], size: int,
          next_key: int = 0) -> tuple[dict[str, list[int]], int]:
    """Each track's ``[shard, key]``: where it was last time, else in the last shard while it has
    room, then in new shards; and the next key to give. Keys are never reused (a sample key names
    one track for good): ``next_key`` is the last export's, which remembers tracks that left."""
    placed = {name: list(previous[name]) for name in names if name in previous}
    counts = Counter(shard for shard, _ in placed.values())
    next_key = max([next_key] + [key + 1 for _, key in previous.values()])
    shard = max((s for s, _ in previous.values()), default=0)
    for name in names:
        if name in placed:
            continue
        while counts[shard] >= size:
            shard += 1
        placed[name] = [shard, next_key]
        counts[shard] += 1
        next_key += 1
    return placed, next_key


def _lean(record: TrackRecord) -> TrackRecord:
    """What a shard needs of a track until it is written: its folder and mix, not its features."""
    return TrackRecord(record.track, {}, {})


def _write_shards(records: dict[str, TrackRecord], entries: list[dict[str, Any]], index_of: dict[str, int],
                  out: Output, options: ExportOptions) -> None:
    previous = out.previous_state.get("shard_placement", {})
    placement, next_key = place(list(records), previous if isinstance(previous, dict) else {}, options.shard_size,
                                int(out.previous_state.get("shard_next_key", 0)))
    by_shard: dict[int, list[tuple[int, str]]] = {}
    for name, (shard, key) in placement.items():
        by_shard.setdefault(shard, []).append((key, name))
    for shard in sorted(by_shard):
        members, shard_key = [], []
        for key_number, name in sorted(by_shard[shard]):
            record, key = records[name], f"{key_number:06d}"
            meta = orjson.dumps({**entries[index_of[name]], "track": name, "mirdeck_export_schema": SCHEMA_VERSION})
            stat = record.audio.stat()
            members.append((key, record, meta))
            shard_key.append(f"{key}\0{record.audio}\0{stat.st_size}\0{stat.st_mtime_ns}\0{digest(meta)}")
        rel = f"{SHARDS}/{shard:06d}.tar"
        if not out.is_current(rel, digest("\n".join(shard_key).encode())):
            _write_shard(out, rel, members)
    out.extra["shard_placement"] = dict(sorted(placement.items()))
    out.extra["shard_next_key"] = next_key


def export(records: Iterable[TrackRecord], out: Output, options: ExportOptions, summary: ExportSummary,
           root: Path) -> None:
    entries: list[dict[str, Any]] = []
    by_relpath: dict[str, int] = {}
    by_path: dict[str, int] = {}
    sharded: dict[str, TrackRecord] = {}  # the records only (their entries are in ``entries``)
    index_of: dict[str, int] = {}
    for record in records:
        summary.tracks += 1
        if not exportable(record, summary):
            continue
        entry = metadata_entry(record, options)
        by_path[os.path.abspath(record.audio)] = len(entries)
        if record.audio.is_relative_to(root):
            by_relpath[record.audio.relative_to(root).as_posix()] = len(entries)
        if options.shards:
            sharded[record.name] = _lean(record)
            index_of[record.name] = len(entries)
        entries.append(entry)
        summary.exported += 1
    if options.shards:
        _write_shards(sharded, entries, index_of, out, options)
    table = {"mirdeck_export_schema": SCHEMA_VERSION, "entries": entries, "by_relpath": by_relpath,
             "by_path": by_path}
    out.write(METADATA, orjson.dumps(table, option=orjson.OPT_INDENT_2))
    text = MODULE_TEXT.format(schema=SCHEMA_VERSION, root=root.resolve(), module=out.path(MODULE).resolve(),
                              metadata=str(out.path(METADATA).resolve()))
    out.write(MODULE, text.encode())
