"""Serves a running engine's event stream on a Unix socket in its run folder.

A ``RunServer`` is one more subscriber of the engine (beside the run log and any screen), in the
engine's own event loop. It starts listening at the first event, keeps the compacted replay of the
run (``replay.Replay``) and writes each event, serialised once, to every attached client. A client
that attaches gets the replay and then the live events with nothing missed or sent twice: both are
written in one step of the loop. Writing never waits for a client: one that stops reading is
dropped once a lot is queued for it, and the run goes on. Stop and pause from a client call the
engine's own controls; their state is sent to every client whoever changed it (a client, or the
dashboard of the terminal that owns the run). When the run is over the clients get ``bye``, the
socket goes and the dataset's lock is released.
"""
from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from pathlib import Path
from typing import Any

from tui.run import events as ev
from tui.service import wire
from tui.service.registry import DatasetLock, ServiceRecord
from tui.service.replay import Replay, RunProgress
from tui.service.sockets import addressable, make_private_dir, socket_path

SLOW_CLIENT_BYTES = 64 * 1024 * 1024  # queued for one client beyond its replay: it is dropped
CONTROL_POLL_S = 0.25
FIRST_LINE_TIMEOUT_S = 10.0


class _Client:
    def __init__(self, writer: asyncio.StreamWriter):
        self.writer = writer
        self.allowance = SLOW_CLIENT_BYTES
        self.dropped = False

    def send(self, line: bytes) -> None:
        if self.dropped or self.writer.is_closing():
            return
        transport = self.writer.transport
        if transport.get_write_buffer_size() > self.allowance:
            self.dropped = True
            transport.abort()
            return
        self.writer.write(line)


def peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
    except OSError:
        return None
    return int(uid)


class RunServer:
    def __init__(self, engine: Any, lock: DatasetLock | None = None, *, detached: bool = False):
        self.engine = engine
        self.lock = lock
        self.detached = detached
        self.path: Path = socket_path(engine.log_dir)
        self.replay = Replay()
        self.progress = RunProgress()
        self.clients: set[_Client] = set()
        self.started_at = time.time()
        self.listening = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._finish_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._control: dict[str, Any] = {"paused": False, "stopping": ""}
        self.finished = False

    # -- the engine's side ------------------------------------------------------------------------
    def __call__(self, event: ev.Event) -> None:
        line = wire.event_line(event)
        self.replay.add(event, line)
        self.progress(event)
        for client in list(self.clients):
            client.send(line)
        if self._start_task is None and not self.finished:
            self._start_task = asyncio.get_running_loop().create_task(self._start_or_say_why())
        if isinstance(event, ev.RunFinished):
            self.finished = True
            self._finish_task = asyncio.get_running_loop().create_task(self.finish())

    async def start(self) -> None:
        """Listen on the socket and publish this run in the dataset's record."""
        if self._server is not None:
            return
        make_private_dir(self.path.parent)
        self.path.unlink(missing_ok=True)
        with addressable(self.path) as address:
            self._server = await asyncio.start_unix_server(self._handle, path=address, limit=wire.LINE_LIMIT)
        os.chmod(self.path, 0o600)
        if self.lock is not None:
            self.lock.publish(ServiceRecord(
                dataset=str(self.engine.dataset), pid=os.getpid(), socket=str(self.path),
                log_dir=str(self.engine.log_dir), run_id=str(self.engine.run_id), detached=self.detached,
                started_at=self.started_at, profile=getattr(self.engine.profile, "name", "")))
        self._watch_task = asyncio.get_running_loop().create_task(self._watch_control())
        self.listening.set()

    async def _start_or_say_why(self) -> None:
        try:
            await self.start()
        except OSError as exc:  # the run goes on, only without clients
            self.engine.emit(ev.Warning(message=f"the run cannot be watched from elsewhere: its socket "
                                                f"{self.path} failed: {exc}"))

    async def finish(self, grace: float = 5.0) -> None:
        """Say ``bye``, give the clients a moment to read what is queued, close everything."""
        self.finished = True
        if self._watch_task is not None:
            self._watch_task.cancel()
        bye = wire.encode({"type": "bye", "stopped": bool(getattr(self.engine, "_stopping", False))})
        clients, self.clients = list(self.clients), set()
        for client in clients:
            client.send(bye)
        async def drain(client: _Client) -> None:
            try:
                await asyncio.wait_for(client.writer.drain(), grace)
            except (OSError, asyncio.TimeoutError):
                pass
            client.writer.close()
        await asyncio.gather(*(drain(c) for c in clients), return_exceptions=True)
        self.close()

    def close(self) -> None:
        """Stop listening, remove the socket, release the dataset (safe to call twice)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.path.unlink(missing_ok=True)
        if self.lock is not None:
            self.lock.release()

    # -- controls -----------------------------------------------------------------------------------
    def control_state(self) -> dict[str, Any]:
        engine = self.engine
        stopping = "immediate" if getattr(engine, "_aborting", False) else (
            "graceful" if getattr(engine, "_stopping", False) else "")
        return {"paused": bool(engine.paused), "stopping": stopping}

    def apply(self, action: str) -> str:
        if action not in wire.ACTIONS:
            raise ValueError(f"unknown action {action!r}; known: {', '.join(wire.ACTIONS)}")
        if self.finished:
            return "the run is over"
        if action == "stop":
            self.engine.stop()
        elif action == "stop_now":
            self.engine.stop(immediate=True)
        elif action == "pause":
            self.engine.pause()
        else:
            self.engine.resume()
        self._send_control(by="client")
        return "ok"

    def _send_control(self, by: str) -> None:
        state = self.control_state()
        if state == self._control:
            return
        self._control = state
        line = wire.encode({"type": "control", "by": by, **state})
        for client in list(self.clients):
            client.send(line)

    async def _watch_control(self) -> None:
        while not self.finished:  # the terminal that owns the run may pause or stop it too
            await asyncio.sleep(CONTROL_POLL_S)
            self._send_control(by="owner")

    # -- clients ----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        state = self.control_state()
        return {"type": "status", "pid": os.getpid(), "run_id": str(self.engine.run_id),
                "log_dir": str(self.engine.log_dir), "detached": self.detached, "clients": len(self.clients),
                "finished": self.finished, **state, **self.progress.to_dict(paused=state["paused"])}

    def hello(self) -> dict[str, Any]:
        return {"type": "hello", "pid": os.getpid(), "dataset": str(self.engine.dataset),
                "run_id": str(self.engine.run_id), "log_dir": str(self.engine.log_dir),
                "detached": self.detached, "started_at": self.started_at, **self.control_state()}

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        uid = peer_uid(writer)
        if uid is not None and uid not in (os.getuid(), 0):  # the 0600 socket already keeps them out
            writer.close()
            return
        try:
            first = wire.decode(await asyncio.wait_for(reader.readline(), FIRST_LINE_TIMEOUT_S))
        except (ValueError, OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            writer.close()
            return
        kind = first["type"]
        try:
            if kind == "attach":
                await self._attached(reader, writer)
                return
            if kind == "status":
                writer.write(wire.encode(self.status()))
            elif kind == "control":
                try:
                    writer.write(wire.encode({"type": "ok", "message": self.apply(str(first.get("action")))}))
                except ValueError as exc:
                    writer.write(wire.encode({"type": "error", "message": str(exc)}))
            else:
                writer.write(wire.encode({"type": "error", "message": f"unknown request {kind!r}"}))
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    async def _attached(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = _Client(writer)
        # Hello, the replay and "live" go out in this one step of the loop, before any new event.
        writer.write(wire.encode(self.hello()))
        for line in self.replay:
            writer.write(line)
        writer.write(wire.encode({"type": "live"}))
        client.allowance += writer.transport.get_write_buffer_size()
        if self.finished:
            writer.write(wire.encode({"type": "bye", "stopped": bool(getattr(self.engine, "_stopping", False))}))
            await writer.drain()
            writer.close()
            return
        self.clients.add(client)
        try:
            while line := await reader.readline():
                try:
                    message = wire.decode(line)
                except ValueError:
                    continue
                if message["type"] == "control":
                    try:
                        self.apply(str(message.get("action")))
                    except ValueError as exc:
                        client.send(wire.encode({"type": "error", "message": str(exc)}))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self.clients.discard(client)
            if not writer.is_closing():
                writer.close()

