"""Slow backend capped at one worker, like a memory-hungry CPU model."""
import time

from backends.spec import BackendSpec, Extractor

SPEC = BackendSpec(name="single", version="1", description="test: one worker at most",
                   keys=("single_ok",), audio=(), max_workers=1)


class Single(Extractor):
    def process(self, track):
        time.sleep(0.1)
        return {"single_ok": 1}


def create():
    return Single()
