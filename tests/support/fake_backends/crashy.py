"""Dies with SIGKILL mid-track on tracks named '*crash*'; '*crashonce*' dies only the first time."""
import os
import signal

from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="crashy", version="1", description="test: killed mid-track",
                   keys=("crashy_frames",), audio=(AudioNeed("mix", None),), timeout_s=30)


class Crashy(Extractor):
    def process(self, track: Track) -> Result:
        marker = track.folder / ".crashed-once"
        if "crashonce" in track.name and not marker.exists():
            marker.write_text("1")
            os.kill(os.getpid(), signal.SIGKILL)
        elif "crash" in track.name and "crashonce" not in track.name:
            os.kill(os.getpid(), signal.SIGKILL)
        return Result({"crashy_frames": track.mix.frames})


def create():
    return Crashy()
