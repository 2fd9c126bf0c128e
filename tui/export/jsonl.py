"""``jsonl``: ``tracks.jsonl``, one JSON object per track (see docs/exports.md for the fields).

Rows stream to a temporary file, so memory stays flat however large the dataset; the file is
replaced only when its bytes changed.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import orjson

from tui.export.common import ExportOptions, ExportSummary, exportable, row_of
from tui.export.features import TrackRecord
from tui.export.output import Output

FILE = "tracks.jsonl"


def stream_rows(records: Iterable[TrackRecord], options: ExportOptions, summary: ExportSummary, root: Path,
                fh, on_row: Callable[[dict], None] | None = None) -> str:
    """Write one line per exportable track to ``fh``; the digest of what was written."""
    sha = hashlib.sha256()
    for record in records:
        summary.tracks += 1
        if not exportable(record, summary):
            continue
        row = row_of(record, options, root=root)
        line = orjson.dumps(row) + b"\n"
        sha.update(line)
        fh.write(line)
        summary.exported += 1
        if on_row:
            on_row(row)
    return sha.hexdigest()


def export(records: Iterable[TrackRecord], out: Output, options: ExportOptions, summary: ExportSummary,
           root: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{FILE}.", suffix=".tmp", dir=out.root)
    try:
        with os.fdopen(fd, "wb") as fh:
            key = stream_rows(records, options, summary, root, fh)
        if out.is_current(FILE, key):
            os.unlink(tmp)
        else:
            os.replace(tmp, out.path(FILE))
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
