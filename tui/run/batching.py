"""Several tracks in one call to a worker, for modules that batch tracks inside their model.

A module whose spec sets ``tracks_per_call`` above 1 (the Music Flamingo back ends) gets its
tracks' requests collected here and sent as one protocol ``batch``. Everything else about a track
(its decode, its other modules, how its result is recorded) stays per track: the batcher only
decides which requests travel together.

When a batch leaves: as soon as it is full, or when no more requests of the module are to come in
this sweep, or ``LINGER_S`` after it started filling. The next batch starts filling only once the
previous one has been sent to a worker, so while a worker is busy the queue grows into a full batch.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

# How long a batch waits for more tracks (while more are to come) before it goes with fewer: about
# a long track's decode, short beside what a Flamingo call costs.
LINGER_S = 5.0


@dataclass
class PendingTrack:
    """One track's request waiting in a batch, and where its outcome goes."""

    track_id: str
    message: dict[str, Any]
    timeout: float
    on_progress: Callable[[dict[str, Any]], None] | None
    on_started: Callable[[int], None] | None
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class TrackBatcher:
    """Collects one module's requests (on one node) into calls of up to ``size`` tracks.

    ``send(batch, sent)`` makes the call and resolves every track's future; it sets ``sent`` once
    the call went to a worker (or will never go). ``expected()`` says how many requests of this
    module may still be submitted in the sweep; ``stopping()`` ends waiting for them.
    """

    def __init__(self, size: int, send: Callable[[list[PendingTrack], asyncio.Event], Awaitable[None]],
                 expected: Callable[[], int], stopping: Callable[[], bool], linger_s: float = LINGER_S):
        self.size, self.send, self.expected, self.stopping = max(1, size), send, expected, stopping
        self.linger_s = linger_s
        self.queue: list[PendingTrack] = []
        self._arrived = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self.sizes: list[int] = []  # tracks of each call sent, in order

    async def submit(self, pending: PendingTrack) -> Any:
        self.queue.append(pending)
        self._arrived.set()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await pending.future

    def poke(self) -> None:
        """Something ``expected()`` counts changed without a submission (a track that will not come)."""
        self._arrived.set()

    async def _drain(self) -> None:
        while self.queue:
            await self._fill()
            batch, self.queue = self.queue[:self.size], self.queue[self.size:]
            sent = asyncio.Event()
            self.sizes.append(len(batch))
            call = asyncio.create_task(self._send(batch, sent))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)
            await sent.wait()  # the next batch fills while this one waits for a worker

    async def _send(self, batch: list[PendingTrack], sent: asyncio.Event) -> None:
        try:
            await self.send(batch, sent)
        finally:
            sent.set()

    async def _fill(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.linger_s
        while len(self.queue) < self.size and self.expected() > 0 and not self.stopping():
            left = deadline - loop.time()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                return
