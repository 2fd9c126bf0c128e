"""Answers at once, reading nothing: the engine's and the dashboard's own overhead per track."""
from backends.spec import BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="dash_fast", version="1", description="test: no work", keys=("dash_fast_ok",), audio=())


class Fast(Extractor):
    def process(self, track: Track) -> Result:
        return Result({"dash_fast_ok": 1})


def create():
    return Fast()
