"""Takes a while and reports progress: lets tests stop, pause and kill a run mid-track."""
import time

from backends.spec import BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="slowprogress", version="1", description="test: slow with progress",
                   keys=("slow_ok",), audio=(), timeout_s=60)


class Slow(Extractor):
    def process(self, track: Track) -> Result:
        steps = int(track.options.get("steps", 10))
        for i in range(steps):
            time.sleep(float(track.options.get("step_seconds", 0.1)))
            track.progress((i + 1) / steps, f"step {i + 1}")
        return Result({"slow_ok": 1})


def create():
    return Slow()
