"""Prints a line to stderr, then dies by SIGKILL mid-track on tracks whose name contains 'crash'."""
import os
import signal
import sys

from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="dash_crash", version="1", description="test: killed mid-track",
                   keys=("dash_crash_frames",), audio=(AudioNeed("mix", None),), timeout_s=30)


class Crashy(Extractor):
    def process(self, track: Track) -> Result:
        print(f"dash_crash: working on {track.name}", file=sys.stderr, flush=True)
        if "crash" in track.name:
            print("dash_crash: about to die", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return Result({"dash_crash_frames": track.mix.frames})


def create():
    return Crashy()
