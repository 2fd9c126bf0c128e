"""The worker loop every backend runs in: ``python -m backends.worker MODULE``.

Started by exec from the engine, once per run per module, so a model loads once. Before anything
heavy is imported the real stdout is moved to a private descriptor used only for protocol
messages, and descriptor 1 is pointed at stderr: libraries that print (TensorFlow, llama.cpp,
tqdm) then land in the run's log instead of corrupting the protocol.
"""
from __future__ import annotations

import os
import sys


def _protect_stdout():
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb", buffering=0)


PARENT_CHECK_S = 0.5


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM us if the engine dies while we are busy computing."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:  # pragma: no cover - not Linux; the watch below still ends us
        pass


def _watch_parent(parent: int) -> None:
    """The fallback for when the parent-death signal does not end us: a library that installs
    its own SIGTERM handler, a kernel without prctl. A daemon thread sees the engine gone (we are
    re-parented) even while the main thread is deep in a computation that never reads stdin,
    and ends this worker with everything it started (it leads its own process group)."""
    import signal
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        if os.getpgid(0) == os.getpid():
            os.killpg(0, signal.SIGKILL)
        os._exit(1)

    threading.Thread(target=watch, name="mirdeck-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    protocol_out = _protect_stdout()
    argv = sys.argv[1:] if argv is None else argv
    parent = os.getppid()
    _die_with_parent()
    if os.getppid() != parent:  # the engine died before prctl took effect
        return 1
    _watch_parent(parent)

    import importlib
    import time
    import traceback

    from backends import protocol as p
    from backends.process_cpu import tree_cpu_seconds

    def send(message) -> None:
        protocol_out.write(p.encode(message))

    if len(argv) != 1:
        print("usage: python -m backends.worker MODULE", file=sys.stderr)
        return 2
    module = importlib.import_module(argv[0])
    spec = getattr(module, "SPEC", None)
    name = spec.name if spec else argv[0]
    version = spec.version if spec else "0"
    profile = os.environ.get("MIRDECK_PROFILE", "")
    try:
        extractor = module.create()
    except p.BackendError as exc:
        send(p.hello(backend=name, version=version, pid=os.getpid(), device="none", ready=False,
                     error={"kind": exc.kind.value, "message": exc.message}))
        extractor = None
    except Exception as exc:
        traceback.print_exc()
        send(p.hello(backend=name, version=version, pid=os.getpid(), device="none", ready=False,
                     error={"kind": "internal", "message": f"{name} failed to start: {exc!r}"}))
        extractor = None
    else:
        send(p.hello(backend=name, version=version, pid=os.getpid(),
                     device=extractor.device, ready=True))

    from backends.spec import Result
    from backends.track import Track

    def failure(rid, message, exc: BaseException) -> dict:
        """The ``error`` reply for one request that raised ``exc``."""
        folder = message["track"].get("folder")
        if isinstance(exc, p.BackendError):
            return p.error(rid, exc.kind, exc.message)
        if isinstance(exc, MemoryError):
            return p.error(rid, "out_of_memory", f"{name}: out of memory on {folder}")
        traceback.print_exception(exc)
        return p.error(rid, "internal", f"{name} failed on {folder}: {exc!r}")

    def track_of(message) -> Track:
        rid = message["id"]
        return Track.from_request(
            message, send_progress=lambda fraction, stage, rid=rid: send(p.progress(rid, fraction, stage)))

    def success(track: Track, result, wall: float, cpu: float, batching: dict | None = None) -> dict:
        if not isinstance(result, Result):
            raise TypeError(f"{name}.process returned {type(result).__name__}, not backends.spec.Result")
        provenance = {"version": version, "device": extractor.device, "profile": profile,
                      **extractor.model_provenance, **result.provenance, **(batching or {})}
        if track.notes:
            provenance["notes"] = dict(track.notes)
        audio_seconds = track.mix.duration if track.has("mix") else 0.0
        return p.result(track.request_id, features=result.features, files=result.files,
                        audio_seconds=audio_seconds, wall_seconds=wall, cpu_seconds=cpu, provenance=provenance)

    def answer(message) -> dict:
        rid = message["id"]
        started, cpu_started = time.perf_counter(), tree_cpu_seconds()
        try:
            track = track_of(message)
            result = extractor.process(track)
            # A module that can batch tracks says so also when a track came alone.
            alone = {"tracks_per_call": 1} if spec is not None and spec.tracks_per_call > 1 else None
            return success(track, result, time.perf_counter() - started, tree_cpu_seconds() - cpu_started, alone)
        except Exception as exc:
            return failure(rid, message, exc)

    def answer_batch(messages: list) -> list[dict]:
        """Every track of one call answered on its own. The call's wall and CPU time are shared out
        by audio duration, so per-track rates and the ETA stay per track; provenance keeps the call's."""
        started, cpu_started = time.perf_counter(), tree_cpu_seconds()
        replies: list = [None] * len(messages)
        tracks, where = [], []
        for i, message in enumerate(messages):
            try:
                tracks.append(track_of(message))
                where.append(i)
            except Exception as exc:
                replies[i] = failure(message["id"], message, exc)
        outcomes: list = []
        if tracks:
            try:
                outcomes = list(extractor.process_batch(tracks))
                if len(outcomes) != len(tracks):
                    raise TypeError(f"{name}.process_batch answered {len(outcomes)} of {len(tracks)} tracks")
            except Exception as exc:
                # The batch as a whole failed (out of memory, a bug): each track alone, so a bad one fails alone.
                print(f"mirdeck worker {name}: the batch of {len(tracks)} tracks failed ({exc!r}); "
                      "running them one at a time", file=sys.stderr)
                for i, track in zip(where, tracks):
                    replies[i] = answer(messages[i])
                return replies
        wall, cpu = time.perf_counter() - started, tree_cpu_seconds() - cpu_started
        durations = [t.mix.duration if t.has("mix") else 0.0 for t in tracks]
        total = sum(durations)
        batching = {"tracks_per_call": len(messages), "call_wall_s": round(wall, 4)}
        for i, track, outcome, seconds in zip(where, tracks, outcomes, durations):
            share = seconds / total if total > 0 else 1 / len(tracks)
            try:
                if isinstance(outcome, BaseException):
                    raise outcome
                replies[i] = success(track, outcome, wall * share, cpu * share, batching)
            except Exception as exc:
                replies[i] = failure(messages[i]["id"], messages[i], exc)
        return replies

    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline()
        if not line:
            break
        if not line.strip():
            continue
        try:
            message = p.decode(line)
        except ValueError as exc:
            print(f"mirdeck worker {name}: unreadable request: {exc}", file=sys.stderr)
            continue
        if message["type"] == "shutdown":
            break
        if message["type"] == "batch":
            inner = message.get("requests", [])
            if extractor is None:
                send(p.results(message["id"], [p.error(m["id"], "internal", f"{name} is not ready") for m in inner]))
            else:
                send(p.results(message["id"], answer_batch(inner)))
            continue
        if message["type"] != "request":
            continue
        rid = message["id"]
        if extractor is None:
            send(p.error(rid, "internal", f"{name} is not ready"))
            continue
        send(answer(message))
    if extractor is not None:
        extractor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
