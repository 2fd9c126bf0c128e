"""One track through the Essentia models: embeddings once, every chosen head on them."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from backends.extractors.essentia_tf.catalogue import EMBEDDING, HEADS, SAMPLE_RATE, Head, metadata
from backends.extractors.essentia_tf.graphs import GraphCache
from backends.extractors.essentia_tf.labels import Settings, all_labels, top_labels
from backends.protocol import BackendError, BadInput, ModelMissing

VGGISH_MIN_SAMPLES = 15041
"""Fewest 16 kHz samples that give one VGGish patch (about 0.94 s; measured with
essentia-tensorflow 2.1b6.dev1389, used only to word the error)."""


def effnet_min_samples() -> int:
    """Fewest 16 kHz samples that give one EffNet patch (128 frames of hop 256, first frame
    centred on sample 0, as essentia's FrameCutter does): about 2.03 s."""
    return (EMBEDDING.patch_frames - 2) * EMBEDDING.hop_size + EMBEDDING.frame_size // 2 + 1


@dataclass
class Analysis:
    features: dict[str, Any] = field(default_factory=dict)
    all_probabilities: dict[str, dict[str, float]] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, stage: str):
        began = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds[stage] = round(self.stage_seconds.get(stage, 0.0)
                                              + time.perf_counter() - began, 4)


def _mono(track):
    import numpy as np

    from backends.audio import to_mono

    data, _ = track.audio("mix", SAMPLE_RATE)
    # The average of the channels, as essentia's MonoLoader mixes; essentia wants a contiguous
    # float32 vector.
    return np.ascontiguousarray(to_mono(data), dtype=np.float32)


def _too_short(path: str, samples: int, model: str, minimum: int) -> BadInput:
    return BadInput(f"{path}: {samples / SAMPLE_RATE:.3f} s of audio is too short for {model}, "
                    f"which needs at least {minimum / SAMPLE_RATE:.3f} s for one patch")


def _patch_means(predictions, model: str, classes: int, path: str):
    """Mean over patches of a [patches, classes] output, after checking its width."""
    import numpy as np

    array = np.asarray(predictions, dtype=np.float64)
    if array.ndim != 2:
        raise BackendError(f"{model} gave output of shape {array.shape} on {path}, not [patches, classes]")
    if array.shape[1] != classes:
        raise ModelMissing(f"model {model!r} gives {array.shape[1]} values per patch but its metadata "
                           f"lists {classes} classes: the installed file is not this model; "
                           f"reinstall it with: mirdeck models fetch {model}")
    if not np.all(np.isfinite(array)):
        raise BackendError(f"{model} produced non-finite values on {path}")
    return array.mean(axis=0)


def _run(algorithm, data, model: str, path: str):
    try:
        return algorithm(data)
    except RuntimeError as exc:
        raise BackendError(f"{model} failed on {path}: {str(exc).splitlines()[0]}") from None


def _embedding_model(graphs: GraphCache):
    def build(es, path):
        return es.TensorflowPredictEffnetDiscogs(
            graphFilename=path, input=EMBEDDING.input, output=EMBEDDING.output,
            batchSize=EMBEDDING.batch_size, patchHopSize=EMBEDDING.patch_hop_frames,
            lastPatchMode="discard")

    return graphs.get(EMBEDDING.name, EMBEDDING.file, (EMBEDDING.input, EMBEDDING.output), build)


def _label_head(graphs: GraphCache, head: Head):
    meta = metadata(head.model)

    def build(es, path):
        # dimensions must match the embeddings: TensorflowPredict2D reconfigures, and so reloads
        # its graph, on the first input whose width differs from this parameter.
        return es.TensorflowPredict2D(graphFilename=path, input=meta.input, output=meta.output,
                                      dimensions=EMBEDDING.dimensions)

    return graphs.get(head.model, head.file, (meta.input, meta.output), build), meta


def _vggish_head(graphs: GraphCache, head: Head):
    meta = metadata(head.model)

    def build(es, path):
        return es.TensorflowPredictVGGish(graphFilename=path, input=meta.input, output=meta.output)

    return graphs.get(head.model, head.file, (meta.input, meta.output), build), meta


def analyse(track, settings: Settings, graphs: GraphCache) -> Analysis:
    """Features of one track for the heads in ``settings``; raises ``BadInput`` for audio too
    short for one patch of a chosen model (nothing is padded or looped to make one up)."""
    result = Analysis()
    path = str(track.mix.path)
    heads = [HEADS[name] for name in settings.heads]
    label_heads = [h for h in heads if h.kind == "labels"]
    vggish_heads = [h for h in heads if h.kind == "vggish"]
    with result.timed("audio"):
        mono = _mono(track)
    steps = len(label_heads) + len(vggish_heads) + bool(label_heads)
    done = 0

    if label_heads:
        track.progress(0.0, "discogs-effnet embeddings")
        with result.timed("load"):
            embedder = _embedding_model(graphs)
        with result.timed("embeddings"):
            embeddings = _run(embedder, mono, EMBEDDING.name, path)
        if len(embeddings) == 0:  # shorter than one patch: essentia returns an empty list
            raise _too_short(path, len(mono), EMBEDDING.name, effnet_min_samples())
        done += 1
        for head in label_heads:
            track.progress(done / steps, f"{head.name} head")
            with result.timed("load"):
                algorithm, meta = _label_head(graphs, head)
            with result.timed("heads"):
                raw = _run(algorithm, embeddings, head.model, path)
            with result.timed("labels"):
                probabilities = _patch_means(raw, head.model, len(meta.classes), path)
                result.features[head.key] = top_labels(probabilities, meta.classes,
                                                       threshold=settings.threshold, top_k=settings.top_k)
                result.all_probabilities[head.name] = all_labels(probabilities, meta.classes)
            done += 1

    for head in vggish_heads:
        track.progress(done / steps, f"{head.name} (vggish)")
        with result.timed("load"):
            algorithm, meta = _vggish_head(graphs, head)
        with result.timed("vggish"):
            raw = _run(algorithm, mono, head.model, path)
        if len(raw) == 0:
            raise _too_short(path, len(mono), head.model, VGGISH_MIN_SAMPLES)
        with result.timed("labels"):
            probabilities = _patch_means(raw, head.model, len(meta.classes), path)
            for key, label in head.picks:
                result.features[key] = round(float(probabilities[meta.column(label)]), 4)
            result.all_probabilities[head.name] = all_labels(probabilities, meta.classes)
        done += 1
    return result
