"""Short text forms of numbers for the screen. Unknown values show as an en dash, never 0."""
from __future__ import annotations

from typing import Iterable

DASH = "–"
BLOCKS = "▁▂▃▄▅▆▇█"
GIB = 1 << 30


def gib(value: int | None, digits: int = 1) -> str:
    return DASH if value is None else f"{value / GIB:.{digits}f}"


def size(value: int | None) -> str:
    """Bytes as MiB below 1 GiB, else GiB."""
    if value is None:
        return DASH
    if value < GIB:
        return f"{value / (1 << 20):,.0f} MiB"
    return f"{value / GIB:.1f} GiB"


def short_size(value: int | None) -> str:
    """Bytes in at most 6 characters: ``410M``, ``8.9G``."""
    if value is None:
        return DASH
    if value < GIB:
        return f"{value / (1 << 20):.0f}M"
    return f"{value / GIB:.1f}G"


def rtf(value: float | None) -> str:
    """Realtime factor (audio seconds per wall second) as ``214×``."""
    if not value:
        return DASH
    return f"{value:,.0f}×" if value >= 100 else f"{value:,.1f}×"


def duration(seconds: float | None) -> str:
    """``6 h 12 m``, ``4 m 05 s``, ``12 s``."""
    if seconds is None:
        return DASH
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 24:
        return f"{hours // 24} d {hours % 24} h"
    if hours:
        return f"{hours} h {minutes:02d} m"
    if minutes:
        return f"{minutes} m {secs:02d} s"
    return f"{secs} s"


def hours(seconds: float | None) -> str:
    """Audio amounts: ``42 s``, ``12.3 m``, ``95.1 h``."""
    if seconds is None:
        return DASH
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} m"
    return f"{seconds / 3600:,.1f} h"


def sparkline(values: Iterable[float], width: int) -> str:
    """Fractions 0–1 (the last ``width`` of them) as block characters; values are not clamped
    silently: anything outside 0–1 would be a probe bug, so it shows as '!'."""
    out = []
    for v in list(values)[-width:]:
        out.append("!" if v < 0 or v > 1 else BLOCKS[min(len(BLOCKS) - 1, int(v * len(BLOCKS)))])
    return "".join(out).rjust(width, " ")


def bar(fraction: float, width: int) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "█" * filled + "░" * (width - filled)


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def shorten_middle(text: str, width: int) -> str:
    """Cut from the middle: track names often share a long prefix (artist, album) and differ at
    the end ("… Part 1", "… Part 2"), which cutting the end would hide."""
    if len(text) <= width:
        return text
    if width < 8:
        return shorten(text, width)
    tail = (width - 1) // 2
    return text[: width - 1 - tail] + "…" + text[len(text) - tail:]


def fitting_columns(columns, drop_order, width: int) -> list[int]:
    """Indices of the ``(name, width)`` columns shown in ``width`` cells: all of them, or without
    the ones named in ``drop_order``, left out one by one in that order until the rest fit."""
    dropped: set[str] = set()
    for label in (None, *drop_order):
        if label:
            dropped.add(label)
        shown = [i for i, (name, _) in enumerate(columns) if name not in dropped]
        if sum(columns[i][1] for i in shown) <= width:
            break
    return shown
