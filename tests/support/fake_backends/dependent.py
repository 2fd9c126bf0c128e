"""Reads another backend's result (audio_info), as rhythm-dependent modules do."""
from backends.spec import BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="dependent", version="1", description="test: uses audio_info",
                   keys=("dependent_duration",), audio=(), requires=("audio_info",))


class Dependent(Extractor):
    def process(self, track: Track) -> Result:
        return Result({"dependent_duration": track.inputs["audio_info"]["features"]["duration_seconds"]})


def create():
    return Dependent()
