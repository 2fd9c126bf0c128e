"""Small helpers shared by the signal-processing extractors (loudness, spectral, energy, chroma,
harmonic). Imported only inside extractor functions: numpy and essentia load lazily.
"""
from __future__ import annotations

import math
import os

from backends.protocol import BadInput


def essentia_standard():
    """``essentia.standard`` from the essentia-tensorflow wheel, with TensorFlow's start-up chatter
    turned down (that wheel links TensorFlow into every essentia import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import essentia

    essentia.log.infoActive = False  # "no classifier models configured" noise at import
    import essentia.standard as es

    return es


def per_frame(algorithm):
    """An essentia standard algorithm's C++ compute, without the Python wrapper's per-call type
    checks and conversions (about 45 us a call, more than SpectralPeaks or HPCP themselves take
    on a 4096-sample frame). For loops over frames only: the caller must pass what the wrapper
    would have converted to, C-contiguous float32 vectors (rows of a C-contiguous 2-D float32
    array are), and gets essentia's own outputs."""
    return algorithm.__compute__


def essentia_provenance() -> dict:
    from importlib.metadata import version

    return {"libraries": f"essentia-tensorflow {version('essentia-tensorflow')}"}


def mono(data):
    """Average of the channels as contiguous float32 ``[frames]`` (what essentia wants)."""
    import numpy as np

    from backends.audio import to_mono

    # to_mono: the values of data.mean(axis=1), without NumPy's slow reduction over a 2-wide axis
    # (about 1 s per 7.5-minute stereo signal).
    return np.ascontiguousarray(to_mono(data), dtype=np.float32)


def db_power(mean_square: float) -> float | None:
    """10·log10 of a mean square (dBFS); None for zero, which has no level in dB."""
    return 10.0 * math.log10(mean_square) if mean_square > 0 else None


def present_stems(track, stems) -> list[str]:
    """The stems of ``stems`` this track has, each checked to match the mix's channel count.

    A stem with another channel layout than the mix was not cut from it: ``BadInput`` naming
    the stem file, rather than features that compare incomparable signals.
    """
    found = [stem for stem in stems if track.has(stem)]
    mix = track.sources.get("mix")
    for stem in found:
        src = track.sources[stem]
        if mix is not None and src.channels != mix.channels:
            raise BadInput(f"{src.path}: stem has {src.channels} channel(s) but the mix "
                           f"{os.path.basename(mix.path)} has {mix.channels}; stems must match the mix")
    return found
