"""The run service's cost: per event with 0, 1 and 4 attached clients, the replay kept for a late
client, and how long a late client takes to catch up (replay into a fresh RunView).

    python -m benchmarks.service [--tracks 2000] [--modules 8]

Events are synthetic but shaped like a real run's: per track a start, a decode, per module a
start, three progress messages and a finish, then the track's finish.
"""
from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console
from rich.table import Table

from tui.dashboard.runview import RunView
from tui.run import events as ev
from tui.service.client import RemoteRun
from tui.service.registry import ServiceRecord
from tui.service.server import RunServer


def run_events(tracks: int, modules: int):
    names = [f"module_{i}" for i in range(modules)]
    yield ev.RunStarted(dataset="bench", profile="cpu", modules=names, tracks=tracks,
                        planned={m: tracks for m in names}, skipped={m: 0 for m in names}, log_dir="bench")
    for t in range(tracks):
        track = f"Artist {t % 97} - Title {t:05d}"
        yield ev.TrackStarted(track=track, modules=names)
        yield ev.TrackDecoded(track=track, sources={"mix": ["44100"]}, wall_seconds=0.01)
        for m in names:
            yield ev.ModuleStarted(track=track, module=m, worker_pid=1000)
            for f in (0.25, 0.5, 0.75):
                yield ev.ModuleProgress(track=track, module=m, fraction=f, stage="stage")
            yield ev.ModuleFinished(track=track, module=m, audio_seconds=200.0, wall_seconds=0.5,
                                    realtime_factor=400.0, keys=6)
        yield ev.TrackFinished(track=track, ok=names, failed=[], audio_seconds=200.0)
    yield ev.RunFinished(stopped=False, wall_seconds=1.0, summary={})


def engine_stub(folder: Path):
    return SimpleNamespace(dataset=folder, log_dir=folder, run_id="bench", profile=SimpleNamespace(name="cpu"),
                           paused=False, _stopping=False, _aborting=False)


async def measure(tracks: int, modules: int, clients: int) -> dict:
    events = list(run_events(tracks, modules))[:-1]  # RunFinished would close the server
    with tempfile.TemporaryDirectory() as tmp:
        server = RunServer(engine_stub(Path(tmp)))
        await server.start()
        record = ServiceRecord(dataset=tmp, pid=0, socket=str(server.path), log_dir=tmp, run_id="bench",
                               detached=True, started_at=0.0)
        remotes = [RemoteRun(record) for _ in range(clients)]
        tasks = [asyncio.create_task(r.run()) for r in remotes]
        for remote in remotes:
            await remote.caught_up.wait()
        began = time.perf_counter()
        for i, event in enumerate(events):
            server(event)
            if i % 500 == 0:
                await asyncio.sleep(0)  # let the loop write to the clients, as a real run's awaits do
        emit_s = time.perf_counter() - began
        replay_lines = len(server.replay)
        replay_bytes = sum(len(line) for line in server.replay)
        late = RemoteRun(record)
        view = RunView()
        late.subscribe(view)
        began = time.perf_counter()
        late_task = asyncio.create_task(late.run())
        await late.caught_up.wait()
        catch_up_s = time.perf_counter() - began
        assert view.modules["module_0"].done == tracks
        for task in [*tasks, late_task]:
            task.cancel()
        await asyncio.gather(*tasks, late_task, return_exceptions=True)
        server.close()
    return {"events": len(events), "us_per_event": 1e6 * emit_s / len(events), "replay_lines": replay_lines,
            "replay_mb": replay_bytes / 1e6, "catch_up_s": catch_up_s}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracks", type=int, default=2000)
    parser.add_argument("--modules", type=int, default=8)
    args = parser.parse_args()
    table = Table(title=f"run service, {args.tracks} tracks x {args.modules} modules", title_justify="left")
    for column in ("clients", "events", "µs/event (server)", "replay lines", "replay MB", "late client catch-up s"):
        table.add_column(column, justify="right")
    for clients in (0, 1, 4):
        r = asyncio.run(measure(args.tracks, args.modules, clients))
        table.add_row(str(clients), f"{r['events']:,}", f"{r['us_per_event']:.1f}", f"{r['replay_lines']:,}",
                      f"{r['replay_mb']:.1f}", f"{r['catch_up_s']:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
