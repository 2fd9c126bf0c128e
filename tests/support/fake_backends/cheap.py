"""Costs a known worker time per audio second (option ``cost``, default 0.01), so an ETA can be
checked against a run whose costs are constructed (benchmarks/eta.py)."""
import time

from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="cheap", version="1", description="test: sleeps a fixed time per audio second",
                   keys=("cheap_seconds",), audio=(AudioNeed("mix", None),), timeout_s=600)


class Costly(Extractor):
    def process(self, track: Track) -> Result:
        seconds = track.mix.duration * float(track.options.get("cost", 0.01))
        time.sleep(seconds)
        return Result({"cheap_seconds": seconds})


def create():
    return Costly()
