"""Essentia-TensorFlow classifiers: genre (400 Discogs styles), mood/theme (56), instrument (40)
on Discogs-EffNet embeddings computed once per track, plus danceability and atonality (and,
when asked, voice/instrumental) from the VGGish classifiers.

Probabilities are means over the model's patches (about 2 s for EffNet, 1 s for VGGish), 0..1.
Per-run options (profile ``[backend.essentia_tf.options]`` or the CLI):
``heads`` (default genre, mood, instrument, danceability, atonality; ``voice`` is optional),
``threshold`` (0..1, default 0.1), ``top_k`` (default 10), ``sidecar`` (default false: when
true, every label's probability goes to ``<name>.ESSENTIA_TF``).
"""
from __future__ import annotations

import time

from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track


def models_for(options: dict) -> tuple[str, ...]:
    """The EffNet embedding (when a label head is chosen) and each chosen head's model."""
    from backends.extractors.essentia_tf.catalogue import DEFAULT_HEADS, EMBEDDING, HEADS

    heads = options.get("heads", DEFAULT_HEADS)
    if isinstance(heads, str):
        heads = [h.strip() for h in heads.split(",") if h.strip()]
    chosen = [HEADS[h] for h in HEADS if h in set(heads)]
    if not chosen:  # an invalid choice: the worker says what is wrong with it
        return SPEC.models
    return ((EMBEDDING.name,) if any(h.kind == "labels" for h in chosen) else ()) + tuple(h.model for h in chosen)


SPEC = BackendSpec(
    name="essentia_tf",
    version="1",
    description="Essentia-TensorFlow: Discogs-EffNet genre/mood/instrument labels, "
                "VGGish danceability and atonality",
    # Which keys appear depends on the run's ``heads`` option, so none is promised always.
    keys=(),
    optional_keys=("essentia_genre", "essentia_mood", "essentia_instrument", "danceability",
                   "atonality", "voice_probability", "instrumental_probability"),
    audio=(AudioNeed("mix", 16000),),
    # The models of the default heads; voice_instrumental-vggish-audioset-1 (the optional
    # ``voice`` head) is in the manifest too but not needed unless asked for.
    models=("discogs-effnet-bs64-1", "genre_discogs400-discogs-effnet-1",
            "mtg_jamendo_moodtheme-discogs-effnet-1", "mtg_jamendo_instrument-discogs-effnet-1",
            "danceability-vggish-audioset-1", "tonal_atonal-vggish-audioset-1"),
    timeout_s=900,
    sidecars=("ESSENTIA_TF",),
    models_for=models_for,
    # labels.py's defaults: a run given one of them explicitly is the same run.
    option_defaults={"heads": ["genre", "mood", "instrument", "danceability", "atonality"],
                     "threshold": 0.1, "top_k": 10, "sidecar": False},
)


class EssentiaTF(Extractor):
    def __init__(self) -> None:
        from backends.extractors.essentia_tf.graphs import GraphCache

        super().__init__(device="cpu")
        self.graphs = GraphCache()

    def process(self, track: Track) -> Result:
        from backends.extractors.essentia_tf.labels import parse_settings
        from backends.extractors.essentia_tf.runner import analyse

        settings = parse_settings(track.options)
        started = time.perf_counter()
        result = analyse(track, settings, self.graphs)
        # Timings ride in provenance (the worker copies model_provenance into each result), so
        # a user can see where a track's time went without a profiler.
        self.model_provenance = {**self.graphs.provenance(),
                                 "stage_seconds": {**result.stage_seconds,
                                                   "total": round(time.perf_counter() - started, 4)}}
        if settings.sidecar:
            import json

            path = track.write_sidecar("ESSENTIA_TF", json.dumps(result.all_probabilities, indent=1))
            return Result(result.features, files={"probabilities": path})
        return Result(result.features)


def create() -> EssentiaTF:
    from backends.extractors.essentia_tf.graphs import import_essentia
    from backends.protocol import BackendError

    # TensorFlow's start-up (seconds) belongs to the worker's start, not to the first track's
    # realtime factor. Graphs load on the first track that needs them: which heads run is a
    # per-run option that arrives with the requests, and an unused head's file need not exist.
    try:
        import_essentia()
    except ImportError as exc:
        raise BackendError(f"essentia_tf needs the essentia-tensorflow package ({exc}); "
                           "install mirdeck's dependencies with bin/setup") from None
    return EssentiaTF()
