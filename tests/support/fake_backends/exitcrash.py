"""Delivers every result, then crashes while exiting (as ROCm 7.2's runtime does)."""
import os

from backends.spec import BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="exitcrash", version="1", description="test: crash at exit",
                   keys=("exitcrash_ok",), audio=())


class ExitCrash(Extractor):
    def process(self, track: Track) -> Result:
        return Result({"exitcrash_ok": 1})

    def close(self):
        os._exit(134)  # what an assert() in a runtime's atexit handler looks like


def create():
    return ExitCrash()
