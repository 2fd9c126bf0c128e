"""``acestep``: ACE-Step-style sidecars, one JSON per audio file beside a link to it.

Fields (only those the features know): ``caption`` (the prompt template), ``bpm`` (whole
beats per minute), ``keyscale`` (``A minor``), ``timesignature`` (never written yet: no mirdeck
module estimates the metre, and a guessed 4/4 would be an invented value), ``duration``
(seconds). ``dataset.json`` lists every sample with its audio path and the same fields.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import orjson

from tui.export.audio_tree import link_audio, sidecar_rel
from tui.export.common import ExportOptions, ExportSummary, exportable, prompt_of
from tui.export.features import TrackRecord
from tui.export.output import SCHEMA_VERSION, Output

INDEX = "dataset.json"


def sidecar(record: TrackRecord, options: ExportOptions) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    caption = prompt_of(record, options)
    if caption:
        fields["caption"] = caption
    if record.bpm is not None:
        fields["bpm"] = int(round(record.bpm))
    if record.key is not None:
        fields["keyscale"] = record.key
    duration = record.number("duration_seconds")
    if duration is not None:
        fields["duration"] = duration
    return fields


def export(records: Iterable[TrackRecord], out: Output, options: ExportOptions, summary: ExportSummary,
           root: Path) -> None:
    samples = []
    for record in records:
        summary.tracks += 1
        if not exportable(record, summary):
            continue
        audio = link_audio(record, out)
        fields = sidecar(record, options)
        out.write(sidecar_rel(record), orjson.dumps(fields, option=orjson.OPT_INDENT_2))
        samples.append({"audio_path": str(out.path(audio).absolute()), "track": record.name, **fields})
        summary.exported += 1
    index = {"mirdeck_export_schema": SCHEMA_VERSION, "samples": samples}
    out.write(INDEX, orjson.dumps(index, option=orjson.OPT_INDENT_2))
