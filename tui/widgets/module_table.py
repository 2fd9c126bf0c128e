"""Per-module table: state, counts, realtime factors, workers, peak GPU memory."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from tui.runview import ModuleRow, RunView
from tui.widgets import format as fmt

# Widths include one trailing space (cell padding is 0): the table fits 84 columns.
COLUMNS = (("module", 14), ("state", 12), ("done", 7), ("fail", 5), ("skip", 6), ("audio", 8),
           ("RTF last", 9), ("RTF all", 8), ("PID", 7), ("VRAM pk", 7))
STATE_STYLE = {"running": "green", "idle": "cyan", "waiting": "dim", "done": "bold green",
               "unavailable": "bold red", "stopped": "yellow"}


def row_cells(row: ModuleRow, run_over: bool) -> tuple:
    state = row.state(run_over)
    fail = Text(f"{row.failed:,}", style="bold red" if row.failed else "")
    pids = ",".join(str(p) for p in sorted(row.pids)) or fmt.DASH
    return (row.name, Text(state, style=STATE_STYLE.get(state, "")), f"{row.done:,}", fail,
            f"{row.skipped:,}", fmt.hours(row.audio_seconds) if row.audio_seconds else fmt.DASH,
            fmt.rtf(row.last_rtf), fmt.rtf(row.rtf), fmt.shorten(pids, 7),
            fmt.short_size(row.peak_vram))


class ModuleTable(DataTable):
    """Updated cell by cell, only where a value changed (a full redraw at 4 Hz costs CPU)."""

    DEFAULT_CSS = """
    ModuleTable { height: auto; max-height: 16; }
    """

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.cell_padding = 0
        for label, width in COLUMNS:
            self.add_column(label, width=width, key=label)
        self._cells: dict[str, tuple] = {}

    def render_view(self, view: RunView) -> None:
        run_over = view.finished_at is not None
        for row in list(view.modules.values()) + ([view.decode] if view.decode.done or view.decode.pids else []):
            cells = row_cells(row, run_over)
            if row.name == "decode":
                cells = cells[:2] + (f"{row.done:,}", "", "", "", "", "", cells[8], "")
            old = self._cells.get(row.name)
            if old is None:
                self.add_row(*cells, key=row.name)
            else:
                for (label, _), new, before in zip(COLUMNS, cells, old):
                    if str(new) != str(before) or getattr(new, "style", None) != getattr(before, "style", None):
                        self.update_cell(row.name, label, new)
            self._cells[row.name] = cells

    def selected_module(self) -> str:
        if not self.row_count:
            return ""
        return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
