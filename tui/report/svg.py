"""Charts as inline SVG, drawn from the data: histograms and bar charts that need no script, no
font files and no network, so the report opens anywhere and prints as it looks."""
from __future__ import annotations

import math
from html import escape
from typing import Sequence

BAR = "#3b6ea8"
WIDTH, HEIGHT = 420, 190
PAD_L, PAD_R, PAD_T, PAD_B = 40, 10, 10, 34


def _fmt(x: float, span: float | None = None) -> str:
    """``x`` with as many decimals as ``span`` (the axis range) needs to tell its ticks apart."""
    if abs(x) < 1e-6:  # float noise around zero (an LRA of 7.9e-13 LU) reads as 0
        return "0"
    if span is not None and span > 0:
        decimals = min(4, max(0, 1 - math.floor(math.log10(span))))
        return f"{x:.{decimals}f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 1:
        return f"{x:.1f}"
    return f"{x:.2g}"


def bins_of(values: Sequence[float], count: int = 20) -> tuple[list[int], float, float]:
    """Counts in ``count`` equal bins from min to max (one bin when all values are equal)."""
    lo, hi = min(values), max(values)
    if hi == lo:
        return [len(values)], lo, hi
    counts = [0] * count
    width = (hi - lo) / count
    for v in values:
        counts[min(count - 1, int((v - lo) / width))] += 1
    return counts, lo, hi


def histogram(values: Sequence[float], *, title: str, unit: str = "", bins: int = 20) -> str:
    """A histogram of finite ``values``; an explicit 'no values' box when there are none."""
    values = [v for v in values if math.isfinite(v)]
    head = f'<figure class="chart"><figcaption>{escape(title)} <span class="n">n={len(values)}</span></figcaption>'
    if not values:
        return head + '<p class="empty">no values in this dataset</p></figure>'
    counts, lo, hi = bins_of(values, bins)
    top = max(counts)
    inner_w, inner_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B
    bar_w = inner_w / len(counts)
    parts = [f'<svg class="hist" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
             f'role="img" aria-label="{escape(title)}">']
    for i, c in enumerate(counts):
        h = inner_h * c / top
        x = PAD_L + i * bar_w
        left = lo + (hi - lo) * i / len(counts)
        right = lo + (hi - lo) * (i + 1) / len(counts)
        parts.append(f'<rect class="bar" x="{x + 0.5:.1f}" y="{PAD_T + inner_h - h:.1f}" '
                     f'width="{max(bar_w - 1, 1):.1f}" height="{h:.1f}" fill="{BAR}" data-count="{c}">'
                     f'<title>{_fmt(left, hi - lo)}–{_fmt(right, hi - lo)} {escape(unit)}: {c}</title></rect>')
    base = PAD_T + inner_h
    parts.append(f'<line x1="{PAD_L}" y1="{base}" x2="{WIDTH - PAD_R}" y2="{base}" stroke="#555"/>')
    parts.append(f'<text x="{PAD_L}" y="{base + 14}" class="tick">{_fmt(lo, hi - lo)}</text>')
    parts.append(f'<text x="{WIDTH - PAD_R}" y="{base + 14}" class="tick" text-anchor="end">{_fmt(hi, hi - lo)}</text>')
    parts.append(f'<text x="{(PAD_L + WIDTH - PAD_R) / 2}" y="{base + 28}" class="axis" text-anchor="middle">'
                 f'{escape(unit)}</text>')
    parts.append(f'<text x="{PAD_L - 4}" y="{PAD_T + 8}" class="tick" text-anchor="end">{top}</text>')
    parts.append(f'<text x="{PAD_L - 4}" y="{base}" class="tick" text-anchor="end">0</text>')
    parts.append("</svg></figure>")
    return head + "".join(parts)


def bars(items: Sequence[tuple[str, int]], *, title: str) -> str:
    """Horizontal bars, one per (label, count), in the order given."""
    head = f'<figure class="chart"><figcaption>{escape(title)}</figcaption>'
    if not items or not any(c for _, c in items):
        return head + '<p class="empty">no values in this dataset</p></figure>'
    row, label_w = 16, 150
    height = row * len(items) + 4
    top = max(c for _, c in items)
    inner = WIDTH - label_w - 40
    parts = [f'<svg class="bars" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" '
             f'aria-label="{escape(title)}">']
    for i, (label, count) in enumerate(items):
        y = 2 + i * row
        w = inner * count / top
        shown = label if len(label) <= 24 else label[:23] + "…"
        parts.append(f'<text x="{label_w - 4}" y="{y + 12}" class="tick" text-anchor="end">{escape(shown)}</text>')
        parts.append(f'<rect class="bar" x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row - 4}" fill="{BAR}" '
                     f'data-count="{count}"><title>{escape(label)}: {count}</title></rect>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 12}" class="tick">{count}</text>')
    parts.append("</svg></figure>")
    return head + "".join(parts)
