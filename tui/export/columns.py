"""Column types for the table formats, inferred from every row (a feature's type may differ
between tracks only by being absent or null)."""
from __future__ import annotations

from typing import Any

# What a column may become, from the kinds of value seen in it.
LABELS, JSON = "labels", "json"


def kind_of(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, dict) and value and all(isinstance(k, str) and isinstance(v, (int, float))
                                                 and not isinstance(v, bool) for k, v in value.items()):
        return LABELS
    return JSON


class ColumnTypes:
    """Collects the kinds of value per column, in first-seen order."""

    def __init__(self) -> None:
        self.kinds: dict[str, set[str]] = {}

    def add(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            seen = self.kinds.setdefault(key, set())
            kind = kind_of(value)
            if kind:
                seen.add(kind)

    def resolved(self) -> dict[str, str]:
        """``bool``, ``int``, ``float``, ``str``, ``labels`` (map label -> probability) or
        ``json`` (anything else, kept as its JSON text) per column."""
        out = {}
        for key, kinds in self.kinds.items():
            if kinds == {"int", "float"}:
                out[key] = "float"
            elif len(kinds) == 1:
                out[key] = next(iter(kinds))
            elif not kinds:
                out[key] = "str"  # only nulls so far
            else:
                out[key] = JSON
        return out
