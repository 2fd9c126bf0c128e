"""Per-run settings of ``essentia_tf`` and the mapping from model outputs to features."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from backends.extractors.essentia_tf.catalogue import DEFAULT_HEADS, HEADS
from backends.protocol import BackendError, ErrorKind

DEFAULT_THRESHOLD = 0.1
DEFAULT_TOP_K = 10
DECIMALS = 4


class OptionError(BackendError):
    """A per-run option has a value the backend cannot use; it names the option and the value."""

    kind = ErrorKind.INTERNAL


@dataclass(frozen=True)
class Settings:
    heads: tuple[str, ...] = DEFAULT_HEADS
    threshold: float = DEFAULT_THRESHOLD
    """Labels with a mean probability below this (0..1) are left out."""
    top_k: int = DEFAULT_TOP_K
    """At most this many labels per head (>= 1)."""
    sidecar: bool = False
    """Also write every label's probability to ``<name>.ESSENTIA_TF``."""


OPTION_NAMES = {"heads", "threshold", "top_k", "sidecar"}


def parse_settings(options: dict[str, Any]) -> Settings:
    """Settings from ``track.options`` (profile ``[backend.essentia_tf.options]`` or CLI)."""
    unknown = set(options) - OPTION_NAMES
    if unknown:
        raise OptionError(f"essentia_tf: unknown option(s) {sorted(unknown)}; "
                          f"known: {sorted(OPTION_NAMES)}")
    heads = options.get("heads", DEFAULT_HEADS)
    if isinstance(heads, str):
        heads = [h.strip() for h in heads.split(",") if h.strip()]
    if not isinstance(heads, (list, tuple)) or not heads or any(h not in HEADS for h in heads):
        raise OptionError(f"essentia_tf: option heads={heads!r} must be a non-empty list of "
                          f"{', '.join(HEADS)}")
    threshold = options.get("threshold", DEFAULT_THRESHOLD)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise OptionError(f"essentia_tf: option threshold={threshold!r} must be a number from 0 to 1")
    top_k = options.get("top_k", DEFAULT_TOP_K)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise OptionError(f"essentia_tf: option top_k={top_k!r} must be a whole number >= 1")
    sidecar = options.get("sidecar", False)
    if not isinstance(sidecar, bool):
        raise OptionError(f"essentia_tf: option sidecar={sidecar!r} must be true or false")
    # Metadata order, not the order given: the output does not depend on how the list was typed.
    ordered = tuple(h for h in HEADS if h in set(heads))
    return Settings(heads=ordered, threshold=float(threshold), top_k=top_k, sidecar=sidecar)


def top_labels(probabilities: Sequence[float], classes: Sequence[str], *, threshold: float,
               top_k: int) -> dict[str, float]:
    """``{label: probability}`` for labels >= ``threshold``, highest first, at most ``top_k``.

    Equal probabilities keep the model's class order, so the result is reproducible. The
    threshold applies to the unrounded value; values are rounded to 4 decimals.
    """
    if len(probabilities) != len(classes):
        raise ValueError(f"{len(probabilities)} probabilities for {len(classes)} classes")
    order = sorted(range(len(classes)), key=lambda i: (-probabilities[i], i))
    chosen = [i for i in order if probabilities[i] >= threshold][:top_k]
    return {classes[i]: round(float(probabilities[i]), DECIMALS) for i in chosen}


def all_labels(probabilities: Sequence[float], classes: Sequence[str]) -> dict[str, float]:
    """Every label's probability in the model's class order (for the sidecar), 6 decimals."""
    return {label: round(float(p), 6) for label, p in zip(classes, probabilities)}
