"""The dashboard's detach key on a run it owns: hand the run to a background service.

A run started in a terminal has its workers as children of that terminal's process, and a worker
cannot change parents; so detaching stops the run gracefully (the tracks in flight finish and are
written) and starts a service with the same dataset, profile, modules and options, which resumes
with the tracks not done yet (the plan skips what is done). The price is one more worker start
per module. A run that recomputes done tracks (``--overwrite``) is not handed over: its service
would recompute the tracks this part already redid.
"""
from __future__ import annotations

import asyncio
from typing import Any

from tui.service.daemon import start_detached
from tui.service.registry import ServiceRecord
from tui.service.server import RunServer


class CannotHandOver(Exception):
    pass


def check(engine: Any) -> None:
    if engine.options.overwrite:
        raise CannotHandOver("this run recomputes done tracks (--overwrite): a service resuming it would recompute "
                             "the ones already redone here; stop it, or start it with 'mirdeck run --detach'")


def spec_for(engine: Any) -> dict[str, Any]:
    options = engine.options
    return {"dataset": str(engine.dataset), "profile": engine.profile.name, "only": list(options.only),
            "skip": list(options.skip), "overwrite": [], "jobs": options.jobs,
            "log_dir": str(options.log_dir) if options.log_dir else None,
            "module_options": dict(options.module_options)}


async def hand_over(engine: Any) -> ServiceRecord:
    """Once ``engine``'s run has ended (stopped gracefully): start the service that resumes it."""
    check(engine)
    for subscriber in engine.subscribers:  # its own server releases the dataset's lock as it finishes
        if isinstance(subscriber, RunServer):
            await subscriber.finish()
    return await asyncio.to_thread(start_detached, spec_for(engine))
