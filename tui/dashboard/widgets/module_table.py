"""Per-module table: state, counts, realtime factors, workers, peak GPU memory.

Drawn as fixed-width text lines rather than a DataTable: a DataTable re-renders every visible
row when one cell changes, which at 4 Hz was the largest part of the dashboard's CPU use.
"""
from __future__ import annotations

from rich.text import Text

from tui.dashboard.runview import ModuleRow, RunView
from tui.dashboard.widgets import format as fmt
from tui.dashboard.widgets.panels import Panel, joined

# Widths include one space between columns; the table fits 93 columns. "RTF core": audio seconds
# per CPU second of the module's workers, what it costs however busy the machine (RTF is wall).
COLUMNS = (("module", 14), ("state", 12), ("done", 7), ("fail", 5), ("skip", 6), ("audio", 8),
           ("RTF last", 9), ("RTF all", 8), ("RTF core", 9), ("PID", 8), ("VRAM", 6))
STATE_STYLE = {"running": "green", "idle": "cyan", "waiting": "dim", "done": "bold green",
               "unavailable": "bold red", "failing": "bold red", "stopped": "yellow"}


def row_cells(row: ModuleRow, run_over: bool) -> list[tuple[str, str]]:
    """(text, style) per column."""
    state = row.state(run_over)
    ordered = sorted(row.pids)
    # Several workers: the first PID and how many more (all of them are in the CPU/GPU panels).
    pids = (f"{ordered[0]}+{len(ordered) - 1}" if len(ordered) > 1 else str(ordered[0])) if ordered else fmt.DASH
    if row.name == "decode":
        return [(row.name, "dim"), (state, STATE_STYLE.get(state, "")), (f"{row.done:,}", "")] + \
            [("", "")] * 6 + [(pids, ""), ("", "")]
    return [(row.name, "bold"), (state, STATE_STYLE.get(state, "")), (f"{row.done:,}", ""),
            (f"{row.failed:,}", "bold red" if row.failed else ""), (f"{row.skipped:,}", ""),
            (fmt.hours(row.audio_seconds) if row.audio_seconds else fmt.DASH, ""),
            (fmt.rtf(row.last_rtf), ""), (fmt.rtf(row.rtf), ""), (fmt.rtf(row.realtime_per_core), ""), (pids, ""),
            (fmt.short_size(row.peak_vram), "")]


# Left out one by one, in this order, until the table fits. The counts (done, fail, skip) always
# stay: without "skip" a module whose tracks were all done before reads "done 0".
NARROW_DROP = ("RTF last", "audio", "PID", "VRAM", "RTF all", "RTF core")


def visible_columns(width: int) -> list[int]:
    return fmt.fitting_columns(COLUMNS, NARROW_DROP, width)


def line(cells: list[tuple[str, str]], columns: list[int]) -> Text:
    text = Text()
    for i in columns:
        (value, style), (_, width) = cells[i], COLUMNS[i]
        text.append(fmt.shorten(value, width - 1).ljust(width), style=style)
    return text


class ModuleTable(Panel):
    DEFAULT_CSS = "ModuleTable { height: auto; border: round $primary; padding: 0 0 0 1; }"

    def render_view(self, view: RunView, width: int = 84) -> None:
        run_over = view.finished_at is not None
        rows = list(view.modules.values()) + ([view.decode] if view.decode.done or view.decode.pids else [])
        cells = [row_cells(row, run_over) for row in rows]
        columns = visible_columns(width)
        if self.unchanged((str(cells), tuple(columns))):
            return
        self._columns = columns
        header = line([(label, "bold underline") for label, _ in COLUMNS], columns)
        self.show(joined([header] + [line(c, columns) for c in cells]), 1 + len(cells))

    def cells(self, module: str) -> list[str]:
        """What the row of ``module`` shows, column by column (for tests and scripts)."""
        for row_text in self.content.plain.splitlines()[1:]:
            values, start = [""] * len(COLUMNS), 0
            for i in self._columns:
                values[i] = row_text[start:start + COLUMNS[i][1]].strip()
                start += COLUMNS[i][1]
            if values[0] == module:
                return values
        raise KeyError(module)
