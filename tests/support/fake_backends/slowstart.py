"""Slow to start (like a worker importing TensorFlow), then quick or slow per request: lets tests
check when the engine thinks one more worker is worth its start-up."""
import os
import time

from backends.spec import BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="slowstart", version="1", description="test: slow start-up", keys=("slowstart_ok",),
                   audio=(), timeout_s=60)


class SlowStart(Extractor):
    def process(self, track: Track) -> Result:
        time.sleep(float(track.options.get("seconds", 0.01)))
        return Result({"slowstart_ok": 1})


def create():
    time.sleep(float(os.environ.get("MIRDECK_TEST_STARTUP_S", "0")))
    return SlowStart()
