"""Ignores SIGTERM, as some libraries make a process do (they install their own handler): the
parent-death signal then does not end it, and only the worker's own watch on its parent can."""
import signal
import time

from backends.spec import BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="deaf", version="1", description="test: ignores SIGTERM, then sleeps",
                   keys=("deaf_ok",), audio=(), timeout_s=120)


class Deaf(Extractor):
    def process(self, track: Track) -> Result:
        time.sleep(float(track.options.get("seconds", 30)))
        return Result({"deaf_ok": 1})


def create():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return Deaf()
