"""The JSON-lines protocol between the engine (parent) and a backend worker (child).

Both sides import this module and nothing else to talk to each other. One message per line,
UTF-8 JSON objects, each with a ``type``:

parent -> worker
    ``request``  {id, track, sources, inputs, options, run?}   one track for this module
                 ``run`` (optional): facts about the whole run that a worker sizes itself by once,
                 instead of growing track by track. Today one key: ``longest_mix_seconds``, the
                 longest planned mix of this module's tracks in this sweep (from the files'
                 headers, before any is decoded), sent only to modules whose spec sets
                 ``sized_by_longest_track``; absent when it could not be probed.
    ``batch``    {id, requests: [request, ...]}            several tracks for this module in one call,
                 sent only to modules whose spec sets ``tracks_per_call`` above 1 (the engine sizes the
                 call from the module's option ``tracks_per_call`` and the VRAM budget). Each inner
                 request is a full ``request`` with its own id; every track is answered on its own.
    ``shutdown`` {}                                        finish and exit (closing stdin means the same)

worker -> parent
    ``hello``    {backend, version, pid, device, ready, error?}   once, after the model loaded (or failed to)
    ``progress`` {id, fraction, stage}                              optional, any number
    ``result``   {id, features, files, audio_seconds, wall_seconds, provenance}
    ``error``    {id, kind, message}                                the request failed; the worker lives on
    ``results``  {id, replies: [result | error, ...]}               the answer to a ``batch``: one reply per
                 inner request, in its order, each with the inner request's id. ``progress`` during a
                 batch carries the inner request's id. A track that fails has its ``error`` and the
                 others keep their ``result``; a result's ``wall_seconds``/``cpu_seconds`` are its share
                 of the call (split by audio duration) and its provenance says ``tracks_per_call``.
"""
from __future__ import annotations

import json
from enum import Enum
from typing import Any

PROTOCOL_VERSION = 1

try:  # orjson is a runtime dependency; plain json keeps the protocol usable without it.
    import orjson as _orjson

    def encode(message: dict[str, Any]) -> bytes:
        """One message as one line of bytes, newline included."""
        return _orjson.dumps(message, option=_orjson.OPT_SERIALIZE_NUMPY) + b"\n"

    def decode(line: bytes | str) -> dict[str, Any]:
        message = _orjson.loads(line)
        if not isinstance(message, dict) or "type" not in message:
            raise ValueError(f"not a protocol message: {line[:200]!r}")
        return message

except ImportError:  # pragma: no cover - exercised only without orjson

    def encode(message: dict[str, Any]) -> bytes:
        return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"

    def decode(line: bytes | str) -> dict[str, Any]:
        message = json.loads(line)
        if not isinstance(message, dict) or "type" not in message:
            raise ValueError(f"not a protocol message: {line[:200]!r}")
        return message


class ErrorKind(str, Enum):
    """Why a request failed. The engine decides what to do from the kind alone."""

    BAD_INPUT = "bad_input"  # the track cannot be analysed; other tracks are fine
    MODEL_MISSING = "model_missing"  # the message names the command that installs it
    OUT_OF_MEMORY = "out_of_memory"
    TIMEOUT = "timeout"  # set by the engine: the worker did not answer in time
    CRASH = "crash"  # set by the engine: the worker process died
    INTERNAL = "internal"  # a bug in the backend


class BackendError(Exception):
    """Raised inside a backend to answer a request with a classified error."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, message: str, kind: ErrorKind | None = None):
        super().__init__(message)
        if kind is not None:
            self.kind = kind

    @property
    def message(self) -> str:
        return str(self)


class BadInput(BackendError):
    kind = ErrorKind.BAD_INPUT


class ModelMissing(BackendError):
    kind = ErrorKind.MODEL_MISSING


class OutOfMemory(BackendError):
    kind = ErrorKind.OUT_OF_MEMORY


def hello(*, backend: str, version: str, pid: int, device: str, ready: bool,
          error: dict[str, str] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"type": "hello", "protocol": PROTOCOL_VERSION, "backend": backend,
                           "version": version, "pid": pid, "device": device, "ready": ready}
    if error is not None:
        msg["error"] = error
    return msg


def progress(request_id: str, fraction: float, stage: str = "") -> dict[str, Any]:
    return {"type": "progress", "id": request_id, "fraction": float(fraction), "stage": stage}


def result(request_id: str, *, features: dict[str, Any], audio_seconds: float,
           wall_seconds: float, provenance: dict[str, Any],
           files: dict[str, str] | None = None, cpu_seconds: float | None = None) -> dict[str, Any]:
    """``cpu_seconds``: the worker's CPU time for this request, its helper processes included
    (absent from workers that do not measure it)."""
    reply = {"type": "result", "id": request_id, "features": features, "files": files or {},
             "audio_seconds": float(audio_seconds), "wall_seconds": float(wall_seconds),
             "provenance": provenance}
    if cpu_seconds is not None:
        reply["cpu_seconds"] = float(cpu_seconds)
    return reply


def error(request_id: str | None, kind: ErrorKind | str, message: str) -> dict[str, Any]:
    return {"type": "error", "id": request_id, "kind": ErrorKind(kind).value, "message": message}


def request(request_id: str, *, track: dict[str, Any], sources: dict[str, Any],
            inputs: dict[str, Any] | None = None,
            options: dict[str, Any] | None = None,
            run: dict[str, Any] | None = None) -> dict[str, Any]:
    message = {"type": "request", "id": request_id, "track": track, "sources": sources,
               "inputs": inputs or {}, "options": options or {}}
    if run:
        message["run"] = run
    return message


def batch(batch_id: str, requests: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "batch", "id": batch_id, "requests": list(requests)}


def results(batch_id: str, replies: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "results", "id": batch_id, "replies": list(replies)}


SHUTDOWN = {"type": "shutdown"}
