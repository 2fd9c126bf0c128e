"""``mirdeck run DATASET --detach``: the engine in a background service that owns the run.

The command line starts ``python -m tui.service.daemon`` in a new session (``setsid``); that
process forks once more and exits, so the service is not a session leader and can never gain a
controlling terminal: closing the terminal, an SSH connection that drops or a killed process
group do not reach it. Its standard input is /dev/null and its output goes to ``service.log`` in
the run folder. It takes the dataset's lock (one run per dataset), serves the run's socket
(``server.RunServer``), writes the run log like any run, and says ``ready`` on a pipe the command
line waits on; then the command returns to the shell and the service runs the engine to the end.

The workers are the service's children: they ask Linux to end them when it dies
(``backends/worker.py``), so a killed service leaves no worker behind, and as every ``.INFO`` is
written by rename a killed service leaves nothing half-written; ``mirdeck run`` again resumes.
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tui import paths
from tui.service.registry import DatasetBusy, ServiceRecord

READY_TIMEOUT_S = 120.0


class ServiceStartFailed(Exception):
    pass


# -- the command line's side ------------------------------------------------------------------------
def start_detached(spec: dict[str, Any], *, timeout: float = READY_TIMEOUT_S) -> ServiceRecord:
    """Start the service for ``spec`` and wait until it serves; its record, or DatasetBusy when
    another run holds the dataset, or ServiceStartFailed with what the service said."""
    read_fd, write_fd = os.pipe()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.ROOT), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    try:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "tui.service.daemon", "--ready-fd", str(write_fd), json.dumps(spec)],
            stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd, pass_fds=(write_fd,),
            start_new_session=True, cwd="/", env=env)
    finally:
        os.close(write_fd)
    launcher.wait()  # it forks the service and exits at once
    said = b""
    deadline = time.monotonic() + timeout
    with os.fdopen(read_fd, "rb") as pipe:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(pipe.fileno(), 65536)
            if not chunk:
                break
            said += chunk
            if said.endswith(b"\n") and said.rsplit(b"\n", 2)[-2].startswith((b"ready ", b"busy ")):
                break
    last = said.decode(errors="replace").strip().splitlines()[-1:] or [""]
    if last[0].startswith("ready "):
        return ServiceRecord.from_dict(json.loads(last[0][6:]))
    if last[0].startswith("busy "):
        data = json.loads(last[0][5:])
        raise DatasetBusy(Path(spec["dataset"]), ServiceRecord.from_dict(data) if data else None)
    text = said.decode(errors="replace").strip()
    raise ServiceStartFailed(text or f"the run service did not say it was ready within {timeout:.0f} s")


# -- the service's side -----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3 or argv[0] != "--ready-fd":
        print("usage: python -m tui.service.daemon --ready-fd FD SPEC_JSON", file=sys.stderr)
        return 2
    ready_fd, spec = int(argv[1]), json.loads(argv[2])
    if os.fork() > 0:  # the first child, a session leader, leaves at once
        os._exit(0)
    ready = os.fdopen(ready_fd, "w", buffering=1)
    try:
        return _serve(spec, ready)
    except BaseException as exc:  # the command line shows this
        if not ready.closed:
            import traceback

            ready.write(f"the run service failed to start: {exc!r}\n{traceback.format_exc()}")
        raise


def _serve(spec: dict[str, Any], ready: Any) -> int:
    import asyncio
    import signal

    from tui.run.engine import Engine, RunOptions
    from tui.run.profiles import load
    from tui.run.runlog import RunLog
    from tui.service.registry import DatasetLock
    from tui.service.server import RunServer

    dataset = Path(spec["dataset"])
    try:
        lock = DatasetLock(dataset).acquire()
    except DatasetBusy as busy:
        ready.write("busy " + json.dumps(None if busy.record is None else busy.record.__dict__) + "\n")
        return 3
    options = RunOptions(only=spec.get("only", []), skip=spec.get("skip", []), overwrite=spec.get("overwrite", []),
                         jobs=spec.get("jobs"), log_dir=Path(spec["log_dir"]) if spec.get("log_dir") else None,
                         module_options=spec.get("module_options", {}), cluster=spec.get("cluster"))
    engine = Engine(dataset, load(spec["profile"]), options)
    engine.log_dir.mkdir(parents=True, exist_ok=True)
    log = open(engine.log_dir / "service.log", "a", encoding="utf-8", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    remove_stale_scratch(dataset, engine.run_id)
    journal = ServiceJournal(log)
    engine.subscribe(RunLog(engine.log_dir))
    engine.subscribe(journal)

    async def go() -> int:
        server = RunServer(engine, lock, detached=True)
        engine.subscribe(server)
        await server.start()
        assert lock.record is not None
        journal.line(f"service {os.getpid()} serving {server.path} for {dataset}")
        ready.write("ready " + json.dumps(lock.record.__dict__) + "\n")
        ready.close()
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal(name: str) -> None:
            nonlocal signals
            signals += 1
            journal.line(f"{name}: " + ("stopping after the tracks in flight" if signals == 1 else "stopping now"))
            engine.stop(immediate=signals > 1)

        loop.add_signal_handler(signal.SIGTERM, on_signal, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, on_signal, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, lambda: journal.line("SIGHUP ignored: the service has no terminal"))
        try:
            stats = await engine.run()
        finally:
            await server.finish()
        return 1 if any(s.failed for s in stats.values()) else 0

    try:
        code = asyncio.run(go())
    finally:
        lock.release()
    journal.line(f"service {os.getpid()} done (exit code {code})")
    return code


class ServiceJournal:
    """The service's own lines in ``service.log``: start, failures, warnings, the summary."""

    def __init__(self, fh: Any):
        self.fh = fh

    def line(self, text: str) -> None:
        self.fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")

    def __call__(self, event: Any) -> None:
        name = event.name
        if name == "run_started":
            self.line(f"run started: {event.tracks} tracks, modules {', '.join(event.modules)}; "
                      f"profile {event.profile}")
        elif name == "module_failed":
            self.line(f"{event.kind} {event.module} {event.track}: {event.message}")
        elif name in ("warning", "store_problem"):
            self.line(f"{name}: {event.message}")
        elif name == "run_finished":
            self.line(f"run {'stopped' if event.stopped else 'finished'} after {event.wall_seconds:.1f} s: "
                      + json.dumps(event.summary))


def remove_stale_scratch(dataset: Path, current: str) -> None:
    """Decoded PCM that earlier runs on this dataset left in the scratch folder when they were
    killed. Safe while this service holds the dataset's lock: no other run on it is alive, and
    only folders named after this dataset's own run folders are touched."""
    import shutil

    runs = dataset / ".mirdeck" / "runs"
    if not runs.is_dir():
        return
    root = paths.pcm_scratch_dir()
    for run in runs.iterdir():
        if run.name != current:
            shutil.rmtree(root / f"mirdeck-{run.name}", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
