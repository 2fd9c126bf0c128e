"""``mirdeck export``: turn a dataset's ``.INFO`` files into what a trainer loads.

One module per format, each with ``export(records, out, options, summary, root)``; the exact
fields are in docs/exports.md. Nothing here imports a heavy library; pyarrow is imported by the
Parquet writer only when it runs.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from tui.export.common import ExportOptions, ExportSummary
from tui.export.features import read_dataset
from tui.export.output import ExportError, Output
from tui.export.template import check_fields

FORMATS = {"audiocraft": "audiocraft", "stable-audio": "stable_audio", "jsonl": "jsonl", "parquet": "parquet",
           "acestep": "acestep"}


def is_feature_key(name: str) -> bool:
    """A key some module writes (``mirdeck modules``), patterns like ``lufs_*`` included."""
    from fnmatch import fnmatchcase

    from backends.registry import all_specs

    return any(name in spec.keys or any(fnmatchcase(name, p) for p in spec.optional_keys)
               for spec in all_specs().values())


def default_out(dataset: Path, fmt: str) -> Path:
    return Path(dataset) / ".mirdeck" / "export" / fmt


def run_export(dataset: Path, fmt: str, out: Path | None = None,
               options: ExportOptions | None = None) -> ExportSummary:
    """Export every track of ``dataset`` as ``fmt`` into ``out``; only what changed is written."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise ExportError(f"{dataset}: dataset folder does not exist")
    options = options or ExportOptions()
    check_fields(options.template, is_feature_key)
    out = Path(out) if out is not None else default_out(dataset, fmt)
    writer = importlib.import_module(f"tui.export.{FORMATS[fmt]}")
    output = Output(out, fmt, options.text)
    records, problems = read_dataset(dataset)
    summary = ExportSummary(fmt, out, problems=list(problems))
    writer.export(records, output, options, summary, dataset)
    output.finish({"dataset": str(dataset.resolve()), "tracks": summary.exported, "skipped": summary.skipped})
    summary.written, summary.unchanged, summary.removed = output.written, output.unchanged, output.removed
    return summary


__all__ = ["FORMATS", "ExportError", "ExportOptions", "ExportSummary", "run_export", "default_out"]
