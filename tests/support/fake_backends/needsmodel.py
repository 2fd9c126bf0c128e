"""Needs a model that is not installed: every track gets model_missing with the fetch command."""
from backends.models import require
from backends.spec import BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="needsmodel", version="1", description="test: model missing",
                   keys=("needsmodel_ok",), audio=(), models=("test-model",))


class NeedsModel(Extractor):
    def process(self, track: Track) -> Result:
        return Result({"needsmodel_ok": 1})


def create():
    require("test-model", "test-model.bin")
    return NeedsModel()
