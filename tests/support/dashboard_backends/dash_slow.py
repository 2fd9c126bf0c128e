"""Takes ``steps * step_seconds`` per track and reports progress, so a test can stop or pause mid-run."""
import time

from backends.spec import BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="dash_slow", version="1", description="test: slow with progress",
                   keys=("dash_slow_ok",), audio=(), timeout_s=60,
                   runtime_options=("steps", "step_seconds"))  # they change how long, not what it writes


class Slow(Extractor):
    def process(self, track: Track) -> Result:
        steps = int(track.options.get("steps", 5))
        for i in range(steps):
            time.sleep(float(track.options.get("step_seconds", 0.1)))
            track.progress((i + 1) / steps, f"step {i + 1}/{steps}")
        return Result({"dash_slow_ok": 1})


def create():
    return Slow()
