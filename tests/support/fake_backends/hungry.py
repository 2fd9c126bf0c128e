"""A backend that says each worker needs more memory than any machine has."""
import time

from backends.spec import BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="hungry", version="1", description="test: 100 TB a worker",
                   keys=("hungry_ok",), audio=(), worker_memory_gb=100_000.0)


class Hungry(Extractor):
    def process(self, track: Track) -> Result:
        time.sleep(0.1)
        return Result({"hungry_ok": 1})


def create():
    return Hungry()
