"""A module's pool of long-lived worker processes, started on demand and reused across tracks.

The pool decides when one more worker is worth its start-up; the engine decides what to send.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Protocol

from backends.protocol import ErrorKind
from tui.run import events as ev
from tui.run.supervisor import NodeLost, WorkerDied, WorkerProcess, WorkerTimeout

START_TIMEOUT_S = 600.0


class PoolHost(Protocol):
    """What a pool needs from the engine that owns it."""

    def planned_requests(self, name: str) -> int: ...
    def child_env(self, module: str) -> dict[str, str]: ...
    def worker_stderr(self, module: str, pid: int, line: str) -> None: ...
    def emit(self, event: ev.Event) -> None: ...


class Worker(Protocol):
    """One worker as the pool and the engine use it: a local subprocess (``WorkerProcess``) or a
    Ray actor relaying to the same subprocess on a cluster node (``tui.cluster``)."""

    module: str
    hello: dict[str, Any]
    node: str  # the cluster node it runs on; "" for a local subprocess

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    async def start(self, timeout: float = ...) -> dict[str, Any]: ...
    async def call(self, message: dict[str, Any], timeout: float,
                   on_progress: Callable[[dict[str, Any]], None] | None = ...) -> dict[str, Any]: ...
    def kill(self) -> None: ...
    async def stop(self, grace: float = ...) -> int | None: ...


class ModuleUnavailable(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# Share of the memory available at a module's first request that its workers may take together:
# the rest is for the other modules' workers, the decoded audio in /dev/shm and the desktop.
WORKER_MEMORY_SHARE = 0.5


def workers_that_fit(worker_memory_gb: float) -> int:
    """How many workers that each peak at ``worker_memory_gb`` fit in half the available memory
    (at least one: a module is never shut out, only kept from running several at once)."""
    import psutil

    available_gb = psutil.virtual_memory().available / 2 ** 30
    return max(1, int(available_gb * WORKER_MEMORY_SHARE // worker_memory_gb))


class ModulePool:
    """Up to ``limit`` workers of one module, started on demand and reused across tracks."""

    def __init__(self, engine: PoolHost, name: str, entry: str, limit: int,
                 make_worker: Callable[[], Worker] | None = None):
        self.engine, self.name, self.entry, self.limit = engine, name, entry, max(1, limit)
        # Where a worker lives: a subprocess here by default, a Ray actor on one node (tui.cluster).
        self.make_worker = make_worker or self._local_worker
        self.idle: list[Worker] = []
        self.count = 0
        self.cond = asyncio.Condition()
        self.unavailable: ModuleUnavailable | None = None
        self.workers: set[Worker] = set()
        # More workers start only once one has said hello: a module whose model is missing
        # then costs one start, not one per parallel track.
        self.proven = False
        self.served = 0  # requests handed a worker so far
        self.startup_s: float | None = None  # mean start-up (import, model load) of its workers
        self.request_s: float | None = None  # recent mean time a request holds a worker
        self._since: dict[int, float] = {}  # id(worker): when it was handed out

    def worth_another_worker(self) -> bool | None:
        """Whether starting one more worker finishes this module's remaining requests sooner than
        waiting for the busy ones: not when they would drain the rest before a new worker had even
        imported its libraries (at the end of a run, or for a module whose requests are short
        beside its start-up). None: no request has finished yet to judge by."""
        if self.count == 0 or self.startup_s is None:
            return True
        if self.request_s is None:
            return None
        remaining = max(1, self.engine.planned_requests(self.name) - self.served)
        return remaining * self.request_s / self.count > self.startup_s

    async def acquire(self) -> Worker:
        waited_a_start = False
        async with self.cond:
            while True:
                if self.unavailable:
                    raise self.unavailable
                if self.idle:
                    return self._hand_out(self.idle.pop())
                if self.count < self.limit and (self.proven or self.count == 0):
                    worth = self.worth_another_worker()
                    if worth or (worth is None and waited_a_start):
                        self.count += 1
                        break
                    if worth is None:
                        # Unknown request time: a busy worker that frees up within one start-up
                        # time serves sooner than a new one would.
                        try:
                            await asyncio.wait_for(self.cond.wait(), self.startup_s)
                        except asyncio.TimeoutError:
                            waited_a_start = True
                        continue
                await self.cond.wait()
        try:
            return self._hand_out(await self._start())
        except BaseException:
            async with self.cond:
                self.count -= 1
                self.cond.notify_all()
            raise

    def _hand_out(self, worker: Worker) -> Worker:
        self.served += 1
        self._since[id(worker)] = time.perf_counter()
        return worker

    def _local_worker(self) -> Worker:
        return WorkerProcess(module=self.name, entry=self.entry, env=self.engine.child_env(self.name),
                             on_stderr=self.engine.worker_stderr)

    async def _start(self) -> Worker:
        engine = self.engine
        worker = self.make_worker()
        began = time.perf_counter()
        try:
            hello = await worker.start(timeout=START_TIMEOUT_S)
        except (WorkerDied, WorkerTimeout) as exc:
            await worker.stop(grace=1)
            lost = isinstance(exc, NodeLost)
            engine.emit(ev.WorkerExited(module=self.name, pid=worker.pid,
                                        returncode=worker.returncode,
                                        reason="node_lost" if lost else "crash", node=worker.node))
            if lost:  # the node's fault, not the module's: its tracks go to another node
                raise
            raise ModuleUnavailable(ErrorKind.CRASH.value, f"{self.name} worker failed to start: {exc}") from exc
        self.workers.add(worker)
        startup = time.perf_counter() - began
        self.startup_s = startup if self.startup_s is None else (self.startup_s + startup) / 2
        engine.emit(ev.WorkerStarted(module=self.name, pid=worker.pid, device=hello.get("device", "?"),
                                     ready=bool(hello.get("ready")), startup_seconds=round(startup, 3),
                                     node=worker.node))
        if not hello.get("ready"):
            error = hello.get("error") or {}
            self.unavailable = ModuleUnavailable(error.get("kind", ErrorKind.INTERNAL.value),
                                                 error.get("message", f"{self.name} is not ready"))
            engine.emit(ev.Warning(message=self.unavailable.args[0], module=self.name))
            await self.retire(worker, "shutdown")
            raise self.unavailable
        async with self.cond:
            self.proven = True
            self.cond.notify_all()
        return worker

    async def release(self, worker: Worker) -> None:
        since = self._since.pop(id(worker), None)
        if since is not None:
            held = time.perf_counter() - since
            self.request_s = held if self.request_s is None else 0.8 * self.request_s + 0.2 * held
        async with self.cond:
            self.idle.append(worker)
            self.cond.notify()

    async def retire(self, worker: Worker, reason: str) -> None:
        """Take a worker out of the pool (dead, hung or no longer needed) and reap it."""
        self._since.pop(id(worker), None)
        returncode = await worker.stop(grace=1 if reason != "shutdown" else 10)
        self.workers.discard(worker)
        if reason == "shutdown" and returncode not in (0, None):
            # ROCm 7.2's runtime asserts at process exit: everything was already delivered.
            reason = "crash_at_exit"
            self.engine.emit(ev.Warning(
                message=f"{self.name} worker {worker.pid} exited with code {returncode} after "
                        f"delivering its results; nothing was lost", module=self.name))
        self.engine.emit(ev.WorkerExited(module=self.name, pid=worker.pid, returncode=returncode,
                                         reason=reason, node=worker.node))
        async with self.cond:
            self.count -= 1
            self.cond.notify_all()

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        await asyncio.gather(*(self.retire(w, "shutdown") for w in idle))

    def kill_all(self) -> None:
        for worker in list(self.workers):
            worker.kill()


