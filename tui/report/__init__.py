"""``mirdeck report``: one self-contained HTML page about a dataset (see README, "Report")."""
from __future__ import annotations

from pathlib import Path

from tui.report.stats import DatasetStats, dataset_stats


def write_report(dataset: Path, out: Path, specs=None) -> DatasetStats:
    from tui.export.output import write_atomic
    from tui.report.page import render

    stats = dataset_stats(dataset, specs)
    out = Path(out)
    write_atomic(out, render(stats, out).encode("utf-8"))
    return stats


__all__ = ["write_report", "dataset_stats", "DatasetStats"]
