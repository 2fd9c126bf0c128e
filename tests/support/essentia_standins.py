"""Tiny stand-in Essentia models: the real graphs' node names and shapes, small made-up weights.

They prove the plumbing (files, essentia's real graph loading and patching, label order,
column choice), never the predictions. Every graph carries a ``mirdeck/stand_in`` node, so the
backend marks its results as stand-in in provenance.

The heads are deterministic: their hidden weights are zero and the output biases are the logits
of chosen probabilities (``PROBABILITIES``), so every patch yields exactly those values. One
genre class (``AUDIO_GENRE``) instead grows with the loudness of the audio, through the
embeddings, which shows the heads really read the embeddings of this track.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from backends.extractors.essentia_tf.catalogue import EMBEDDING, HEADS, metadata
from tests.support.graphdef import Graph

BACKGROUND = 0.001
"""Probability of every class not listed in ``PROBABILITIES``."""
AUDIO_GENRE = 100
"""Genre column whose probability is sigmoid(3 * mean log-mel - 4): 0.018 on silence, > 0.99 on
noise at 0.5 amplitude (mean log-mel about 3.3 after resampling to 16 kHz)."""

PROBABILITIES: dict[str, dict[int, float]] = {
    "genre_discogs400-discogs-effnet-1": {7: 0.9, 3: 0.6, 250: 0.35, 399: 0.2, 12: 0.09},
    "mtg_jamendo_moodtheme-discogs-effnet-1": {5: 0.7, 20: 0.4},
    "mtg_jamendo_instrument-discogs-effnet-1": {2: 0.8, 30: 0.15},
    # Two-class VGGish models: columns deliberately not complementary, so reading the wrong
    # column gives a visibly wrong number.
    "danceability-vggish-audioset-1": {0: 0.8, 1: 0.3},
    "tonal_atonal-vggish-audioset-1": {0: 0.25, 1: 0.9},
    "voice_instrumental-vggish-audioset-1": {0: 0.35, 1: 0.7},
}


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))


def _biases(classes: int, chosen: dict[int, float]) -> np.ndarray:
    bias = np.full(classes, _logit(BACKGROUND), dtype=np.float32)
    for index, p in chosen.items():
        bias[index] = _logit(p)
    return bias


def effnet_graph(*, output_node: str = "PartitionedCall") -> bytes:
    """Discogs-EffNet's interface: ``serving_default_melspectrogram`` [64, 128, 96] ->
    ``PartitionedCall:0`` [64, 400] styles and ``PartitionedCall:1`` [64, 1280] embeddings.

    The embedding's first 96 values are the patch's mean log-mel energy per band; the rest 0.
    """
    g = Graph()
    g.no_op("mirdeck/stand_in")
    x = g.placeholder(EMBEDDING.input, [EMBEDDING.batch_size, EMBEDDING.patch_frames, 96])
    bands = g.mean("effnet/time_mean", x, g.const("effnet/time_axis", np.array([1], np.int32)))
    embeddings = g.matmul("effnet/embeddings", bands,
                          g.const("effnet/w_embed", np.eye(96, EMBEDDING.dimensions, dtype=np.float32)))
    styles = g.unary("effnet/styles", "Sigmoid", g.matmul(
        "effnet/styles_logits", embeddings,
        g.const("effnet/w_styles", np.zeros((EMBEDDING.dimensions, 400), np.float32))))
    g.identity_n(output_node, [styles, embeddings])
    return g.to_bytes()


def label_head_graph(model: str, chosen: dict[int, float], *, audio_class: int | None = None,
                     output_node: str | None = None) -> bytes:
    """A head on [batch, 1280] embeddings with the metadata's input and prediction node names:
    dense (512) -> dense_1 (classes) -> sigmoid, like the real MTG-Jamendo heads."""
    meta = metadata(model)
    classes = len(meta.classes)
    g = Graph()
    g.no_op("mirdeck/stand_in")
    x = g.placeholder(meta.input, [None, EMBEDDING.dimensions])
    hidden = g.bias_add("model/dense/BiasAdd", g.matmul(
        "model/dense/MatMul", x, g.const("model/dense/kernel", np.zeros((EMBEDDING.dimensions, 512), np.float32))),
        g.const("model/dense/bias", np.zeros(512, np.float32)))
    weights = np.zeros((EMBEDDING.dimensions, classes), np.float32)
    bias = _biases(classes, chosen)
    if audio_class is not None:
        weights[:96, audio_class] = 3.0 / 96
        bias[audio_class] = -4.0
    # The deterministic part goes through the embeddings directly (a zero hidden layer would
    # make the class independent of the audio).
    direct = g.matmul("model/direct/MatMul", x, g.const("model/direct/kernel", weights))
    logits = g.matmul("model/dense_1/MatMul", hidden,
                      g.const("model/dense_1/kernel", np.zeros((512, classes), np.float32)))
    summed = g.binary("model/dense_1/AddV2", "AddV2", logits, direct)
    biased = g.bias_add("model/dense_1/BiasAdd", summed, g.const("model/dense_1/bias", bias))
    name = output_node or meta.output.split(":")[0]
    g.unary(name, "Sigmoid", biased)
    return g.to_bytes()


def vggish_graph(model: str, chosen: dict[int, float], *, output_node: str | None = None) -> bytes:
    """A VGGish classifier's interface: ``model/Placeholder`` [batch, 96, 64] log-mel patches ->
    ``model/Sigmoid`` [batch, classes]."""
    meta = metadata(model)
    classes = len(meta.classes)
    g = Graph()
    g.no_op("mirdeck/stand_in")
    x = g.placeholder(meta.input, [None, 96, 64])
    pooled = g.mean("model/vggish/pool", x, g.const("model/vggish/axis", np.array([2], np.int32)))
    fc = g.matmul("model/logits/MatMul", pooled, g.const("model/logits/kernel", np.zeros((96, classes), np.float32)))
    logits = g.bias_add("model/logits/BiasAdd", fc, g.const("model/logits/bias", _biases(classes, chosen)))
    g.unary(output_node or meta.output, "Sigmoid", logits)
    return g.to_bytes()


def standin_bytes(model: str) -> bytes:
    if model == EMBEDDING.name:
        return effnet_graph()
    head = next(h for h in HEADS.values() if h.model == model)
    if head.kind == "labels":
        audio = AUDIO_GENRE if head.name == "genre" else None
        return label_head_graph(model, PROBABILITIES[model], audio_class=audio)
    return vggish_graph(model, PROBABILITIES[model])


def model_path(weights: Path, model: str) -> Path:
    return weights / "essentia" / f"{model}.pb"


def write_standins(weights: Path, models=None) -> dict[str, Path]:
    """Write stand-ins for ``models`` (default: all seven) under ``weights/essentia/``."""
    from backends.extractors.essentia_tf.catalogue import ALL_MODELS

    written = {}
    for model in models or ALL_MODELS:
        path = model_path(weights, model)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(standin_bytes(model))
        written[model] = path
    return written
