"""Terminal charts from the data: column histograms in eighth blocks and labelled bar lists,
as Rich renderables (pure functions: the snapshot tests and the dataset screen share them)."""
from __future__ import annotations

import math
from typing import Sequence

from rich.panel import Panel
from rich.text import Text

from tui.report.svg import _fmt, bins_of

BLOCKS = " ▁▂▃▄▅▆▇█"


def histogram_lines(values: Sequence[float], *, bins: int, height: int) -> list[str]:
    """``height`` text rows of ``bins`` columns, each column as tall as its bin's count."""
    counts, _, _ = bins_of(values, bins)
    if len(counts) == 1:  # every value equal: one full column
        counts = [0] * (bins // 2) + counts + [0] * (bins - bins // 2 - 1)
    top = max(counts)
    rows = []
    for level in range(height, 0, -1):
        row = []
        for c in counts:
            eighths = round(8 * height * c / top) if top else 0
            filled = eighths - 8 * (level - 1)
            row.append(BLOCKS[max(0, min(8, filled))])
        rows.append("".join(row))
    return rows


def histogram_panel(values: Sequence[float], *, title: str, unit: str, width: int, height: int = 5) -> Panel:
    values = [v for v in values if math.isfinite(v)]
    inner = max(8, width - 4)
    if not values:
        body = Text("no values", style="dim italic")
    else:
        lines = histogram_lines(values, bins=inner, height=height)
        _, lo, hi = bins_of(values, inner)
        left, right = _fmt(lo, hi - lo), f"{_fmt(hi, hi - lo)} {unit}".rstrip()
        axis = left + " " * max(1, inner - len(left) - len(right)) + right
        body = Text("\n".join(lines), style="steel_blue1")
        body.append("\n" + axis, style="dim")
    return Panel(body, title=f"{title} [dim]n={len(values)}[/]", title_align="left", width=width,
                 border_style="grey50")


def bars_panel(items: Sequence[tuple[str, int]], *, title: str, width: int, rows: int = 6) -> Panel:
    items = [(k, c) for k, c in items if c][:rows]
    if not items:
        return Panel(Text("no values", style="dim italic"), title=title, title_align="left", width=width,
                     border_style="grey50")
    label_w = min(16, max(len(k) for k, _ in items))
    count_w = max(len(str(c)) for _, c in items)
    bar_w = max(4, width - 4 - label_w - count_w - 2)
    top = max(c for _, c in items)
    text = Text()
    for i, (label, count) in enumerate(items):
        shown = label if len(label) <= label_w else label[: label_w - 1] + "…"
        eighths = round(8 * bar_w * count / top)
        bar = "█" * (eighths // 8) + (BLOCKS[eighths % 8] if eighths % 8 else "")
        text.append(f"{shown:>{label_w}} ", style="default")
        text.append(f"{bar:<{bar_w}}", style="steel_blue1")
        text.append(f" {count:>{count_w}}" + ("\n" if i < len(items) - 1 else ""), style="dim")
    return Panel(text, title=title, title_align="left", width=width, border_style="grey50")
