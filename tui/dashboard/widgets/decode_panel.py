"""Text generation per back end: tokens generated, decode tokens/s (latest track and run mean) and
the GPU memory of the back end's workers, their llama-server included.

Shown once a module has reported generated tokens (the Flamingo back ends, through their
provenance's ``decode`` record); until then the panel takes no room.
"""
from __future__ import annotations

from rich.text import Text

from tui.dashboard.runview import ModuleRow, RunView
from tui.dashboard.widgets import format as fmt
from tui.dashboard.widgets.panels import Panel, joined

# Widths include one space between columns: 61 in all, what the main column holds at 100 columns.
COLUMNS = (("back end", 15), ("tokens", 10), ("tok/s last", 11), ("tok/s mean", 11), ("VRAM now", 9),
           ("peak", 5))
NARROW_DROP = ("peak", "VRAM now")


def tokens_per_s(value: float | None) -> str:
    if value is None:
        return fmt.DASH
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def row_cells(row: ModuleRow) -> list[str]:
    return [row.name, f"{row.generated_tokens:,}", tokens_per_s(row.last_tokens_per_s),
            tokens_per_s(row.mean_tokens_per_s), fmt.short_size(row.vram), fmt.short_size(row.peak_vram)]


def visible_columns(width: int) -> list[int]:
    return fmt.fitting_columns(COLUMNS, NARROW_DROP, width)


def line(cells: list[str], columns: list[int], style: str = "") -> Text:
    text = Text()
    for i in columns:
        value, width = cells[i], COLUMNS[i][1]
        # Names left, numbers right (so digits line up under their header's end).
        cell = fmt.shorten(value, width - 1)
        text.append((cell.ljust(width) if i == 0 else cell.rjust(width - 1) + " "), style=style)
    return text


class DecodePanel(Panel):
    DEFAULT_CSS = "DecodePanel { height: auto; border: round $primary; padding: 0 0 0 1; display: none; }"

    def on_mount(self) -> None:
        self.border_title = "text generation"

    def render_view(self, view: RunView, width: int = 61) -> None:
        rows = view.text_generators()
        cells = [row_cells(row) for row in rows]
        columns = visible_columns(width)
        if self.unchanged((str(cells), tuple(columns))):
            return
        self.display = bool(rows)
        self._columns = columns
        if not rows:
            return
        header = line([label for label, _ in COLUMNS], columns, "bold underline")
        self.show(joined([header] + [line(c, columns) for c in cells]), 1 + len(cells))

    def cells(self, module: str) -> dict[str, str]:
        """What the row of ``module`` shows, by column label (for tests and scripts)."""
        for row_text in self.content.plain.splitlines()[1:]:
            values, start = {}, 0
            for i in self._columns:
                label, width = COLUMNS[i]
                values[label] = row_text[start:start + width].strip()
                start += width
            if values["back end"] == module:
                return values
        raise KeyError(module)
