"""``mirdeck report``: one self-contained HTML page about a dataset (see README, "Report")."""
from __future__ import annotations

from pathlib import Path

from tui.report.stats import DatasetStats, dataset_stats


def write_report(dataset: Path, out: Path, specs=None) -> DatasetStats:
    """Write the page to ``out`` (atomically); the track table's rows stream through a temporary
    file while the statistics are gathered, so memory does not grow with the table."""
    import os
    import shutil
    import tempfile

    from tui.report.page import TABLE_MARK, render, track_row

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile() as rows:
        stats = dataset_stats(dataset, specs, keep_rows=False,
                              on_row=lambda r: rows.write(track_row(r, out).encode("utf-8")))
        before, after = render(stats, out).split(TABLE_MARK)
        rows.seek(0)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(before.encode("utf-8"))
                shutil.copyfileobj(rows, fh)
                fh.write(after.encode("utf-8"))
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return stats


__all__ = ["write_report", "dataset_stats", "DatasetStats"]
