"""Does nothing: measures the engine's own overhead per track and module."""
from backends.spec import BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="noop", version="1", description="test: no work", keys=("noop_ok",), audio=())


class Noop(Extractor):
    def process(self, track: Track) -> Result:
        return Result({"noop_ok": 1})


def create():
    return Noop()
