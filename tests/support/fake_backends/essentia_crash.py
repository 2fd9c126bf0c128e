"""Test-only backend: essentia's EffNet with ``batchSize=-1`` on tracks named ``crash*``.

That setting makes essentia-tensorflow 2.1b6 die with SIGSEGV, the kind of native crash the
engine must survive (essentia_tf itself always uses the graph's batch of 64).
"""
from __future__ import annotations

from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="_essentia_crash", version="1", description="segfaults essentia on purpose",
                   keys=("essentia_crash_patches",), audio=(AudioNeed("mix", 16000),), timeout_s=120)


class Crasher(Extractor):
    def process(self, track: Track) -> Result:
        from backends import models
        from backends.extractors.essentia_tf.catalogue import EMBEDDING
        from backends.extractors.essentia_tf.graphs import import_essentia

        es = import_essentia()
        path = models.require(EMBEDDING.name, EMBEDDING.file)
        batch = -1 if track.name.startswith("crash") else EMBEDDING.batch_size
        model = es.TensorflowPredictEffnetDiscogs(graphFilename=str(path), output=EMBEDDING.output,
                                                  batchSize=batch)
        data, _ = track.audio("mix", 16000)
        return Result({"essentia_crash_patches": len(model(data[:, 0].copy()))})


def create() -> Crasher:
    return Crasher()
