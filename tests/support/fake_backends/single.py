"""Slow backend capped at one worker, like a memory-hungry CPU model."""
import time

from backends.spec import BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="single", version="1", description="test: one worker at most",
                   keys=("single_ok",), audio=(), max_workers=1)


class Single(Extractor):
    def process(self, track: Track) -> Result:
        time.sleep(0.1)
        return Result({"single_ok": 1})


def create():
    return Single()
