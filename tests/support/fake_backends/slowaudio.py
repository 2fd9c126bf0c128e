"""Reads the decoded mix, then takes a while: its audio sits in the run's scratch folder while it
works, so a test can kill the engine with decoded audio in /dev/shm and workers busy."""
import time

from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="slowaudio", version="1", description="test: reads audio, then sleeps",
                   keys=("slowaudio_frames",), audio=(AudioNeed("mix", None),), timeout_s=120)


class SlowAudio(Extractor):
    def process(self, track: Track) -> Result:
        data, _ = track.audio("mix", None)
        seconds = float(track.options.get("seconds", 30))
        step = 0.05
        for i in range(int(seconds / step)):
            time.sleep(step)
            if i % 10 == 0:
                track.progress(i * step / seconds, "sleeping")
        return Result({"slowaudio_frames": int(data.shape[0])})


def create():
    return SlowAudio()
