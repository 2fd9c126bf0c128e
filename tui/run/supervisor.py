"""Worker processes: start by exec, talk the protocol, time out, kill, restart, shut down cleanly."""
from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from backends import protocol as p
from tui import paths

LINE_LIMIT = 64 * 1024 * 1024  # one protocol line; results are small, but never truncate one


class WorkerDied(Exception):
    def __init__(self, returncode: int | None, message: str):
        super().__init__(message)
        self.returncode = returncode


class NodeLost(WorkerDied):
    """The machine the worker ran on left the cluster (--cluster): not the worker's fault, so the
    track goes to another node instead of counting as a crash."""


class WorkerTimeout(Exception):
    pass


@dataclass(eq=False)
class WorkerProcess:
    """One long-lived worker of one module."""

    module: str
    entry: str
    env: dict[str, str]
    on_stderr: Callable[[str, int, str], None] = lambda module, pid, line: None
    proc: asyncio.subprocess.Process | None = None
    hello: dict[str, Any] = field(default_factory=dict)
    busy: bool = False
    _pending: asyncio.Future[dict[str, Any]] | None = None
    _progress: Callable[[dict[str, Any]], None] | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _exited: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float = 0.0
    requests_done: int = 0
    node: str = ""  # a local subprocess: no cluster node

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    async def start(self, timeout: float = 300.0) -> dict[str, Any]:
        """Start the process and wait for its ``hello`` (the model loads before it says hello)."""
        self.started_at = time.perf_counter()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "backends.worker", self.entry,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=self.env, cwd=str(paths.ROOT),
            limit=LINE_LIMIT, start_new_session=True)
        loop = asyncio.get_running_loop()
        self._pending = loop.create_future()
        self._tasks = [asyncio.create_task(self._read_stdout()), asyncio.create_task(self._read_stderr())]
        try:
            message = await asyncio.wait_for(self._pending, timeout)
        except asyncio.TimeoutError:
            self.kill()
            raise WorkerTimeout(f"{self.module} worker did not start within {timeout:.0f} s") from None
        if message.get("type") != "hello":
            self.kill()
            raise WorkerDied(None, f"{self.module} worker spoke before hello: {message}")
        self.hello = message
        return message

    async def _read_stdout(self) -> None:
        assert self.proc and self.proc.stdout
        try:
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    break
                try:
                    message = p.decode(line)
                except ValueError as exc:
                    self.on_stderr(self.module, self.pid, f"[mirdeck] protocol garbage: {exc}")
                    continue
                if message["type"] == "progress":
                    if self._progress:
                        self._progress(message)
                elif self._pending is not None and not self._pending.done():
                    self._pending.set_result(message)
        finally:
            returncode = await self.proc.wait()
            if self._pending is not None and not self._pending.done():
                self._pending.set_exception(WorkerDied(returncode, _describe_exit(self.module, returncode)))
            self._exited.set()

    async def _read_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        while True:
            line = await self.proc.stderr.readline()
            if not line:
                return
            self.on_stderr(self.module, self.pid, line.decode("utf-8", "replace").rstrip("\n"))

    async def call(self, message: dict[str, Any], timeout: float,
                   on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Send one request; return its ``result`` or ``error`` message.

        Raises ``WorkerDied`` if the process exits, ``WorkerTimeout`` (after killing it) if it hangs.
        """
        if self._exited.is_set() or not self.proc or not self.proc.stdin:
            raise WorkerDied(self.proc.returncode if self.proc else None, f"{self.module} worker is not running")
        loop = asyncio.get_running_loop()
        self._pending = loop.create_future()
        self._progress = on_progress
        self.busy = True
        try:
            try:
                self.proc.stdin.write(p.encode(message))
                await self.proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the reader reports the death with the exit code
            try:
                reply = await asyncio.wait_for(asyncio.shield(self._pending), timeout)
            except asyncio.TimeoutError:
                self.kill()
                raise WorkerTimeout(f"no answer within {timeout:.0f} s") from None
            self.requests_done += 1
            return reply
        finally:
            self.busy = False
            self._progress = None

    def kill(self) -> None:
        """SIGKILL the worker and everything it started (it leads its own process group)."""
        if self.proc and self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def stop(self, grace: float = 10.0) -> int | None:
        """Ask the worker to finish (shutdown, then stdin closed); kill it if it does not."""
        if not self.proc:
            return None
        if self.proc.returncode is None and self.proc.stdin:
            try:
                self.proc.stdin.write(p.encode(p.SHUTDOWN))
                self.proc.stdin.close()
            except (BrokenPipeError, ConnectionResetError, RuntimeError):
                pass
        try:
            await asyncio.wait_for(self._exited.wait(), grace)
        except asyncio.TimeoutError:
            if self.proc.returncode is None:
                self.proc.terminate()
            try:
                await asyncio.wait_for(self._exited.wait(), 3)
            except asyncio.TimeoutError:
                self.kill()
                await self._exited.wait()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, 2)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                task.cancel()
        return self.proc.returncode


def _describe_exit(module: str, returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"{module} worker died ({name})"
    return f"{module} worker exited unexpectedly (exit code {returncode})"
