"""Parsing the size strings of DRM fdinfo (``"123 KiB"``) into bytes."""
from __future__ import annotations

_UNITS = {"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
          "kB": 1000, "KB": 1 << 10, "MB": 1 << 20}


def parse_size(text: str) -> int:
    """``"8192 KiB"`` -> 8388608. A bare number is bytes (the DRM fdinfo convention).

    Raises ``ValueError`` on anything else, so a format change shows up instead of reading 0.
    """
    parts = text.split()
    if not parts or len(parts) > 2:
        raise ValueError(f"not a size: {text!r}")
    unit = parts[1] if len(parts) == 2 else ""
    if unit not in _UNITS:
        raise ValueError(f"unknown size unit {unit!r} in {text!r}")
    return int(parts[0]) * _UNITS[unit]
