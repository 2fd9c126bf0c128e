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
        if message["type"] != "request":
            continue
        rid = message["id"]
        if extractor is None:
            send(p.error(rid, "internal", f"{name} is not ready"))
            continue
        started, cpu_started = time.perf_counter(), tree_cpu_seconds()
        try:
            track = Track.from_request(
                message, send_progress=lambda fraction, stage, rid=rid: send(p.progress(rid, fraction, stage)))
            result = extractor.process(track)
            if not isinstance(result, Result):
                raise TypeError(f"{name}.process returned {type(result).__name__}, not backends.spec.Result")
            wall = time.perf_counter() - started
            cpu = tree_cpu_seconds() - cpu_started
            provenance = {"version": version, "device": extractor.device, "profile": profile,
                          **extractor.model_provenance, **result.provenance}
            if track.notes:
                provenance["notes"] = dict(track.notes)
            audio_seconds = track.mix.duration if track.has("mix") else 0.0
            send(p.result(rid, features=result.features, files=result.files, audio_seconds=audio_seconds,
                          wall_seconds=wall, cpu_seconds=cpu, provenance=provenance))
        except p.BackendError as exc:
            send(p.error(rid, exc.kind, exc.message))
        except MemoryError:
            send(p.error(rid, "out_of_memory", f"{name}: out of memory on {message['track'].get('folder')}"))
        except Exception as exc:
            traceback.print_exc()
            send(p.error(rid, "internal", f"{name} failed on {message['track'].get('folder')}: {exc!r}"))
    if extractor is not None:
        extractor.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
