"""What every export format shares: its options, its summary, the one-row-per-track view."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tui.export.features import TrackRecord
from tui.export.template import DEFAULT_DESCRIPTION_KEY, PromptTemplate, TemplateError, fields_of, load_template


@dataclass
class ExportOptions:
    template: PromptTemplate = field(default_factory=load_template)
    description_key: str = DEFAULT_DESCRIPTION_KEY
    provenance: bool = False  # jsonl/parquet: add each track's _mirdeck block
    shards: bool = False  # stable-audio: also write WebDataset shards (flac + json)
    shard_size: int = 1000  # tracks per shard
    label_maps: bool = False  # parquet: label dicts as map<string, float64> (datasets cannot load maps)

    @property
    def text(self) -> str:
        return "\n".join(map(str, (self.template.text, self.description_key, self.provenance, self.shards,
                                   self.shard_size, self.label_maps)))


@dataclass
class ExportSummary:
    format: str
    out: Path
    tracks: int = 0
    exported: int = 0
    written: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "<track>: why" for tracks left out
    problems: list[str] = field(default_factory=list)  # scan and .INFO problems


def prompt_of(record: TrackRecord, options: ExportOptions) -> str:
    fields = fields_of(record, options.description_key)
    try:
        return options.template.render(fields)
    except (ValueError, TypeError, KeyError) as exc:
        raise TemplateError(f"{options.template.source}: cannot render for {record.name}: {exc}") from exc


def row_of(record: TrackRecord, options: ExportOptions, *, root: Path) -> dict[str, Any]:
    """One track as a flat row: identity, prompt, then every feature under its own name."""
    row: dict[str, Any] = {
        "track": record.name,
        "audio_path": str(record.audio.resolve()),
        "audio_relpath": str(record.audio.relative_to(root)) if record.audio.is_relative_to(root) else None,
        "info_path": str(record.track.info_path.resolve()),
        "prompt": prompt_of(record, options),
    }
    for key, value in record.features.items():
        if key not in row:
            row[key] = value
    if options.provenance:
        row["provenance"] = record.provenance
    return row


def exportable(record: TrackRecord, summary: ExportSummary, *, needs: tuple[str, ...] = ()) -> bool:
    """False (with the reason in the summary) for a track whose .INFO is broken or lacks ``needs``."""
    if record.problem:
        summary.problems.append(record.problem)
        summary.skipped.append(f"{record.name}: .INFO unreadable")
        return False
    missing = [k for k in needs if record.features.get(k) is None]
    if missing:
        summary.skipped.append(f"{record.name}: no {', '.join(missing)} (run the audio_info module)")
        return False
    return True
