"""``audiocraft``: what AudioCraft's ``MusicDataset`` reads.

``data.jsonl`` holds one ``AudioMeta`` per line (``path``, ``duration``, ``sample_rate``,
``amplitude``, ``weight``, ``info_path``); ``MusicDataset`` opens ``Path(path).with_suffix('.json')``
beside each audio file for the ``MusicInfo`` fields. ``MusicDataset`` requires every field but
``keywords`` to be present by default (``info_fields_required``), so each sidecar holds all of
them, ``null`` where the features do not say.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import orjson

from tui.export.audio_tree import link_audio, sidecar_rel
from tui.export.common import ExportOptions, ExportSummary, exportable, prompt_of
from tui.export.features import TrackRecord
from tui.export.output import SCHEMA_VERSION, Output

MANIFEST = "data.jsonl"
# AudioCraft's MusicInfo metadata fields (audiocraft/data/music_dataset.py), in its order.
MUSIC_INFO_FIELDS = ("title", "artist", "key", "bpm", "genre", "moods", "keywords", "description", "name",
                     "instrument")
AUDIO_META_FIELDS = ("path", "duration", "sample_rate", "amplitude", "weight", "info_path")


def music_info(record: TrackRecord, options: ExportOptions) -> dict[str, Any]:
    artist, title = record.artist_title
    genres, moods, instruments = record.labels("genre"), record.labels("mood"), record.labels("instrument")
    description = record.features.get(options.description_key)
    if not (isinstance(description, str) and description.strip()):
        description = prompt_of(record, options) or None
    keywords = [w for w in dict.fromkeys(genres + instruments)]
    return {
        "title": title, "artist": artist, "key": record.key, "bpm": record.bpm,
        "genre": genres[0] if genres else None, "moods": moods, "keywords": keywords,
        "description": description.strip() if description else None, "name": record.name,
        "instrument": ", ".join(instruments) or None,
        "mirdeck_export_schema": SCHEMA_VERSION,
    }


def export(records: Iterable[TrackRecord], out: Output, options: ExportOptions, summary: ExportSummary,
           root: Path) -> None:
    lines = []
    for record in records:
        summary.tracks += 1
        if not exportable(record, summary, needs=("duration_seconds", "sample_rate")):
            continue
        audio = link_audio(record, out)
        out.write(sidecar_rel(record), orjson.dumps(music_info(record, options), option=orjson.OPT_INDENT_2))
        meta = {"path": str(out.path(audio).absolute()), "duration": float(record.features["duration_seconds"]),
                "sample_rate": int(record.features["sample_rate"]), "amplitude": None, "weight": None,
                "info_path": None}
        lines.append(orjson.dumps(meta))
        summary.exported += 1
    out.write(MANIFEST, b"".join(line + b"\n" for line in lines))
