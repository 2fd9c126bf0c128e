"""Compile librosa's numba functions once, in one process, before workers run in parallel.

librosa caches its compiled numba code beside its own source (``cache=True``). When two worker
processes compile the same function at once they can both write that cache, and a later process
that loads the mixed result crashes with SIGSEGV (seen on a fresh install with two rhythm workers).
``bin/setup`` runs this module once, and the rhythm backend calls ``warm()`` in ``create()``, before
its worker says hello: the engine starts a module's further workers only after the first one's
hello, so they find a complete cache and only read it.
"""
from __future__ import annotations


def warm() -> None:
    """Run the rhythm backend's own onset step on two seconds of noise, as float32 and float64
    (the dtypes it meets), so exactly those signatures are compiled and cached."""
    import numpy as np

    from backends.extractors.rhythm.onsets import ONSET_RATE, detect_onsets

    noise = np.random.default_rng(0).standard_normal(2 * ONSET_RATE)
    for dtype in (np.float32, np.float64):
        detect_onsets(noise.astype(dtype))


if __name__ == "__main__":
    warm()
    print("numba caches warm")
