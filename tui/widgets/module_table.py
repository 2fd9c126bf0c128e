"""Per-module table: state, counts, realtime factors, workers, peak GPU memory.

Drawn as fixed-width text lines rather than a DataTable: a DataTable re-renders every visible
row when one cell changes, which at 4 Hz was the largest part of the dashboard's CPU use.
"""
from __future__ import annotations

from rich.text import Text

from tui.runview import ModuleRow, RunView
from tui.widgets import format as fmt
from tui.widgets.panels import Panel, joined

# Widths include one space between columns; the table fits 84 columns.
COLUMNS = (("module", 14), ("state", 12), ("done", 7), ("fail", 5), ("skip", 6), ("audio", 8),
           ("RTF last", 9), ("RTF all", 8), ("PID", 7), ("VRAM pk", 7))
STATE_STYLE = {"running": "green", "idle": "cyan", "waiting": "dim", "done": "bold green",
               "unavailable": "bold red", "stopped": "yellow"}


def row_cells(row: ModuleRow, run_over: bool) -> list[tuple[str, str]]:
    """(text, style) per column."""
    state = row.state(run_over)
    pids = ",".join(str(p) for p in sorted(row.pids)) or fmt.DASH
    if row.name == "decode":
        return [(row.name, "dim"), (state, STATE_STYLE.get(state, "")), (f"{row.done:,}", "")] + \
            [("", "")] * 5 + [(fmt.shorten(pids, 6), ""), ("", "")]
    return [(row.name, "bold"), (state, STATE_STYLE.get(state, "")), (f"{row.done:,}", ""),
            (f"{row.failed:,}", "bold red" if row.failed else ""), (f"{row.skipped:,}", ""),
            (fmt.hours(row.audio_seconds) if row.audio_seconds else fmt.DASH, ""),
            (fmt.rtf(row.last_rtf), ""), (fmt.rtf(row.rtf), ""), (fmt.shorten(pids, 6), ""),
            (fmt.short_size(row.peak_vram), "")]


def line(cells: list[tuple[str, str]]) -> Text:
    text = Text()
    for (value, style), (_, width) in zip(cells, COLUMNS):
        text.append(fmt.shorten(value, width - 1).ljust(width), style=style)
    return text


class ModuleTable(Panel):
    DEFAULT_CSS = "ModuleTable { height: auto; border: round $primary; padding: 0 1; }"

    def render_view(self, view: RunView) -> None:
        run_over = view.finished_at is not None
        rows = list(view.modules.values()) + ([view.decode] if view.decode.done or view.decode.pids else [])
        cells = [row_cells(row, run_over) for row in rows]
        if self.unchanged(str(cells)):
            return
        header = line([(label, "bold underline") for label, _ in COLUMNS])
        self.show(joined([header] + [line(c) for c in cells]), 1 + len(cells))

    def cells(self, module: str) -> list[str]:
        """What the row of ``module`` shows, column by column (for tests and scripts)."""
        for row_text in self.content.plain.splitlines()[1:]:
            values, start = [], 0
            for _, width in COLUMNS:
                values.append(row_text[start:start + width].strip())
                start += width
            if values[0] == module:
                return values
        raise KeyError(module)
