"""The other end of a run service's socket.

``RemoteRun`` has the interface the views use on a local engine: ``subscribe`` a callback for the
typed events, ``stop``/``pause``/``resume``, ``paused``, ``dataset``, ``log_dir``; and ``run()``,
which follows the stream (the replay of the run so far, then the live events) until the run is
over. So the dashboard, the headless printer and the JSON-lines printer are clients of a service
exactly as they are subscribers of an engine in their own process.
"""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

from tui.run import events as ev
from tui.run.engine import ModuleStats
from tui.service import wire
from tui.service.registry import ServiceRecord
from tui.service.sockets import addressable


class ServiceUnreachable(Exception):
    """Nothing answers on the run's socket (the run ended, or its service died)."""


class ServiceLost(Exception):
    """The connection ended before the run did: the service died (or dropped this client)."""


async def connect(socket_path: str | Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    path = Path(socket_path)
    try:
        with addressable(path) as address:
            return await asyncio.open_unix_connection(address, limit=wire.LINE_LIMIT)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ServiceUnreachable(f"no run service answers on {path} ({exc.strerror or exc}); "
                                 "the run has probably ended") from None


async def request(socket_path: str | Path, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """One question, one answer (``status``, ``control``)."""
    reader, writer = await connect(socket_path)
    try:
        writer.write(wire.encode(message))
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
    finally:
        writer.close()
    if not line:
        raise ServiceLost(f"{socket_path}: the service closed the connection without an answer")
    return wire.decode(line)


def status(record: ServiceRecord, timeout: float = 5.0) -> dict[str, Any]:
    return asyncio.run(request(record.socket, {"type": "status"}, timeout))


def control(record: ServiceRecord, action: str, timeout: float = 5.0) -> dict[str, Any]:
    return asyncio.run(request(record.socket, {"type": "control", "action": action}, timeout))


class RemoteRun:
    def __init__(self, record: ServiceRecord):
        self.record = record
        self.dataset = Path(record.dataset)
        self.log_dir = Path(record.log_dir)
        self.run_id = record.run_id
        self.plan = None  # what the dashboard reads of a local engine after its run
        self.pools: dict[str, Any] = {}
        self.subscribers: list[Callable[[ev.Event], None]] = []
        self.control_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.hello: dict[str, Any] = {}
        self.paused = False
        self.stopping = ""
        self.caught_up = asyncio.Event()
        self.finished: ev.RunFinished | None = None
        self._writer: asyncio.StreamWriter | None = None

    def subscribe(self, callback: Callable[[ev.Event], None]) -> None:
        self.subscribers.append(callback)

    def on_control(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """``callback({"paused": bool, "stopping": "" | "graceful" | "immediate", "by": ...})``."""
        self.control_listeners.append(callback)

    # -- the engine's controls, acting on the service ------------------------------------------------
    def stop(self, *, immediate: bool = False) -> None:
        self._send("stop_now" if immediate else "stop")

    def pause(self) -> None:
        self._send("pause")

    def resume(self) -> None:
        self._send("resume")

    @property
    def _stopping(self) -> bool:
        return bool(self.stopping)

    def _send(self, action: str) -> None:
        if self._writer is None or self._writer.is_closing():
            raise ServiceLost("not connected to the run service")
        self._writer.write(wire.encode({"type": "control", "action": action}))

    # -- the stream ---------------------------------------------------------------------------------
    async def run(self) -> dict[str, ModuleStats]:
        reader, writer = await connect(self.record.socket)
        self._writer = writer
        try:
            writer.write(wire.encode({"type": "attach"}))
            while line := await reader.readline():
                message = wire.decode(line)
                kind = message["type"]
                if kind == "event":
                    event = ev.from_dict(message["data"])
                    if isinstance(event, ev.RunFinished):
                        self.finished = event
                    for callback in self.subscribers:
                        callback(event)
                elif kind == "hello":
                    self.hello = message
                    self._set_control(message, "service")
                elif kind == "control":
                    self._set_control(message, str(message.get("by", "")))
                elif kind == "live":
                    self.caught_up.set()
                elif kind == "bye":
                    break
        except (ConnectionResetError, BrokenPipeError):
            pass
        finally:
            self._writer = None
            writer.close()
        if self.finished is None:
            raise ServiceLost(f"the connection to the run service (pid {self.record.pid}) ended before the run: "
                              f"the service died or dropped this client; see {self.log_dir}/service.log")
        return {name: _stats(numbers) for name, numbers in self.finished.summary.items()}

    def _set_control(self, message: dict[str, Any], by: str) -> None:
        self.paused = bool(message.get("paused", False))
        self.stopping = str(message.get("stopping", ""))
        state = {"paused": self.paused, "stopping": self.stopping, "by": by}
        for callback in self.control_listeners:
            callback(state)


def _stats(numbers: dict[str, float | None]) -> ModuleStats:
    """A module's counters back from the ``run_finished`` summary."""
    count = {k: int(numbers.get(k) or 0) for k in ("planned", "done", "failed", "skipped", "not_applicable")}
    return ModuleStats(**count, audio_seconds=float(numbers.get("audio_seconds") or 0.0),
                       wall_seconds=float(numbers.get("wall_seconds") or 0.0))
