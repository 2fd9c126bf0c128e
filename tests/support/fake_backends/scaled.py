"""Writes what its options say: ``factor`` changes the value, ``threads`` only how it runs, and
``extra`` (a list of names) adds a key per name, so a later run without one leaves it stale."""
from backends.spec import BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="scaled", version="1", description="test: option-dependent output",
                   keys=("scaled_value",), optional_keys=("scaled_extra_*",), audio=(),
                   option_defaults={"factor": 1, "extra": []}, runtime_options=("threads",))


class Scaled(Extractor):
    def process(self, track: Track) -> Result:
        features = {"scaled_value": 10 * track.options.get("factor", 1)}
        for name in track.options.get("extra", []):
            features[f"scaled_extra_{name}"] = 1
        return Result(features)


def create():
    return Scaled()
