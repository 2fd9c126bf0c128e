"""``mirdeck status``: the runs in progress as a plain table (no dashboard)."""
from __future__ import annotations

from typing import Any


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def state_word(row: dict[str, Any]) -> str:
    if "error" in row:
        return "not answering"
    if row.get("finished"):
        return "finished"
    if row.get("stopping"):
        return f"stopping ({row['stopping']})"
    return "paused" if row.get("paused") else "running"


def progress_text(row: dict[str, Any]) -> str:
    total = row.get("units_total") or 0
    if "error" in row:
        return str(row["error"])
    if not total:
        return "planning"
    done = row.get("units_done", 0)
    tracks = f"{row.get('tracks_done', 0)}/{row.get('tracks_total', 0)}"
    text = f"{done}/{total} ({100 * done / total:.0f}%), tracks {tracks}"
    if row.get("failed"):
        text += f", {row['failed']} failed"
    return text


def rate(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def decode_lines(row: dict[str, Any]) -> list[str]:
    """One line per text-generating module of the run (the Flamingo back ends)."""
    return [f"  {module}: {d['generated_tokens']:,} tokens generated, {rate(d.get('last_tokens_per_s'))} tok/s "
            f"latest track, {rate(d.get('mean_tokens_per_s'))} tok/s run mean"
            for module, d in (row.get("decode") or {}).items()]


def format_rows(rows: list[dict[str, Any]]) -> str:
    table = [("DATASET", "PID", "STATE", "PROGRESS", "ETA", "CLIENTS", "RUN LOG")]
    for row in rows:
        kind = "" if row.get("detached") else " (terminal)"
        table.append((row["dataset"], f"{row['pid']}{kind}", state_word(row), progress_text(row),
                      duration(row.get("eta_seconds")), str(row.get("clients", "–")), row["log_dir"]))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(table[0], widths)).rstrip()]
    for row, cells in zip(rows, table[1:]):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(cells, widths)).rstrip())
        lines += decode_lines(row)
    return "\n".join(lines)
