"""The run service's wire format: one JSON object per line, with a ``type``.

Client to service, first line: ``attach`` (then the stream), ``status`` (one answer), or
``control`` with an ``action`` (``stop``, ``stop_now``, ``pause``, ``resume``); an attached client
may send ``control`` lines at any time. Service to client: ``hello`` (who the service is and the
control state), ``event`` lines (``data``: the event's ``to_dict()``; the replay of the run so far
first, then ``live``, then the live events), ``control`` when pause/stop changes, ``status``,
``ok``/``error`` answers, and ``bye`` when the run is over.
"""
from __future__ import annotations

from typing import Any

import orjson

from tui.run import events as ev

LINE_LIMIT = 64 * 1024 * 1024
ACTIONS = ("stop", "stop_now", "pause", "resume")


def encode(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message) + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    message = orjson.loads(line)
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ValueError(f"not a service message: {line[:200]!r}")
    return message


def event_line(event: ev.Event) -> bytes:
    """``encode({"type": "event", "data": event.to_dict()})``, five times faster: orjson writes a
    dataclass natively, and every event has at least its ``time`` field to follow the name."""
    fields = orjson.dumps(event)
    return b'{"type":"event","data":{"event":"' + event.name.encode() + b'",' + fields[1:] + b"}\n"
