"""Host memory of the stems module on a long track, apart from the network's own: the known-answer
stand-in model (stems = gain x mix, tests/support/demucs_standin.py) separates 7.5 minutes (or
``--minutes``) of stereo at 44.1 kHz through the module's ``process`` (normalise, segments, one
shift, resample, FLAC), so what it holds is the plumbing's.

    python -m benchmarks.stems_memory [--minutes 30]
"""
from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=7.5)
    minutes = parser.parse_args().minutes
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from backends.track import Source, Track
    from tests.support import demucs_standin

    tmp = Path(tempfile.mkdtemp(prefix="mirdeck-bench-stems-memory-"))
    demucs_standin.install_scaled_copies(tmp / "weights")
    os.environ["MIRDECK_MODELS_DIR"] = str(tmp / "weights")
    import backends.extractors.stems as stems

    frames = int(minutes * 60 * 44100)
    pcm = tmp / "mix.npy"
    np.save(pcm, (np.random.default_rng(0).standard_normal((frames, 2)) * 0.1).astype(np.float32))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    source = Source(name="mix", path=str(tmp / "full_mix.flac"), sample_rate=44100, channels=2, frames=frames,
                    pcm={"44100": str(pcm)})
    extractor = stems.create()
    began = time.perf_counter()
    extractor.process(Track(request_id="1", folder=tmp, name="A", sources={"mix": source},
                            options={"write_stems": {s: str(tmp / f"{s}.flac") for s in stems.STEMS}}))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{minutes:g} min stereo 44.1 kHz (mix PCM {frames * 2 * 4 / 2**20:.0f} MB), known-answer model: "
          f"{time.perf_counter() - began:.1f} s; peak RSS {peak:.0f} MB, {peak - before:.0f} MB above the "
          f"process before separating ({before:.0f} MB: torch, demucs, the mix)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
