"""Never answers on tracks named '*hang*' (like timbral_models on pathological audio)."""
import time

from backends.spec import BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="hangy", version="1", description="test: hangs", keys=("hangy_ok",), audio=(),
                   timeout_s=1.5)


class Hangy(Extractor):
    def process(self, track: Track) -> Result:
        if "hang" in track.name:
            while True:
                time.sleep(1)
        return Result({"hangy_ok": 1})


def create():
    return Hangy()
