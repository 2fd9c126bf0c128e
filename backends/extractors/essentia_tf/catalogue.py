"""Which Essentia models the ``essentia_tf`` backend runs, and what their metadata says.

The metadata JSON files (copied unchanged from the Essentia model site into ``models/essentia/``)
are the single source of the class labels, their order, and the graph's input and prediction
node names. A head's column for a class is looked up by label, never assumed: an older tool
read the wrong column of the tonal/atonal model and stored P(tonal) as atonality.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from backends import ROOT
from backends.protocol import BackendError, ErrorKind

METADATA_DIR = ROOT / "models" / "essentia"
SAMPLE_RATE = 16000
"""Every model here takes 16 kHz mono audio (metadata ``inference.sample_rate``)."""


@dataclass(frozen=True)
class EmbeddingModel:
    """Discogs-EffNet: audio -> one 1280-d embedding per 128-frame patch (about 2 s, hop 1 s).

    ``PartitionedCall:1`` is the embedding output; ``PartitionedCall`` alone (index 0) is the
    model's own 400 style activations, which are not embeddings.
    """

    name: str = "discogs-effnet-bs64-1"
    file: str = "essentia/discogs-effnet-bs64-1.pb"
    input: str = "serving_default_melspectrogram"
    output: str = "PartitionedCall:1"
    dimensions: int = 1280
    batch_size: int = 64
    """The graph's batch dimension is fixed at 64 ("bs64"); -1 or 0 would crash the process."""
    patch_frames: int = 128
    patch_hop_frames: int = 62
    frame_size: int = 512
    hop_size: int = 256


EMBEDDING = EmbeddingModel()


@dataclass(frozen=True)
class Head:
    """One classifier run per track.

    ``kind`` is ``"labels"`` (a multi-label head on the EffNet embeddings, written as
    ``{label: probability}`` under ``key``) or ``"vggish"`` (a whole VGGish classifier on the
    audio, whose chosen classes' probabilities are written under the keys of ``picks``).
    """

    name: str
    model: str
    kind: str
    key: str = ""
    picks: tuple[tuple[str, str], ...] = ()
    """(feature key, class label) pairs for ``vggish`` heads."""

    @property
    def file(self) -> str:
        return f"essentia/{self.model}.pb"

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key,) if self.kind == "labels" else tuple(k for k, _ in self.picks)


HEADS: dict[str, Head] = {h.name: h for h in (
    Head("genre", "genre_discogs400-discogs-effnet-1", "labels", key="essentia_genre"),
    Head("mood", "mtg_jamendo_moodtheme-discogs-effnet-1", "labels", key="essentia_mood"),
    Head("instrument", "mtg_jamendo_instrument-discogs-effnet-1", "labels", key="essentia_instrument"),
    Head("danceability", "danceability-vggish-audioset-1", "vggish",
         picks=(("danceability", "danceable"),)),
    Head("atonality", "tonal_atonal-vggish-audioset-1", "vggish",
         picks=(("atonality", "atonal"),)),
    Head("voice", "voice_instrumental-vggish-audioset-1", "vggish",
         picks=(("voice_probability", "voice"), ("instrumental_probability", "instrumental"))),
)}
DEFAULT_HEADS = ("genre", "mood", "instrument", "danceability", "atonality")
ALL_KEYS = tuple(k for h in HEADS.values() for k in h.keys)
ALL_MODELS = (EMBEDDING.name,) + tuple(h.model for h in HEADS.values())


@dataclass(frozen=True)
class Metadata:
    model: str
    classes: tuple[str, ...]
    input: str
    output: str
    """The node whose ``output_purpose`` is ``predictions``."""

    def column(self, label: str) -> int:
        """Index of ``label`` in this model's output, from the model's own class list."""
        try:
            return self.classes.index(label)
        except ValueError:
            raise BackendError(f"{self.model}: its metadata has no class {label!r} "
                               f"(classes: {', '.join(self.classes)})", ErrorKind.INTERNAL) from None


def parse_metadata(model: str, raw: dict) -> Metadata:
    """Read classes and node names from one Essentia model JSON (already parsed)."""
    try:
        classes = tuple(str(c) for c in raw["classes"])
        inputs = raw["schema"]["inputs"]
        outputs = raw["schema"]["outputs"]
        output = next(o["name"] for o in outputs if o.get("output_purpose") == "predictions")
        return Metadata(model=model, classes=classes, input=inputs[0]["name"], output=output)
    except (KeyError, IndexError, TypeError, StopIteration) as exc:
        raise BackendError(f"{model}: metadata lacks classes or a predictions output ({exc!r})",
                           ErrorKind.INTERNAL) from None


@lru_cache(maxsize=None)
def metadata(model: str, directory: Path = METADATA_DIR) -> Metadata:
    path = directory / f"{model}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackendError(f"{path}: cannot read the model metadata ({exc})", ErrorKind.INTERNAL) from None
    return parse_metadata(model, raw)
