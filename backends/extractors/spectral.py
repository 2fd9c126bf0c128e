"""Spectral shape of the full mix: flatness, flux, skewness and kurtosis, median over frames.

Per 2048-sample frame (hop 1024, Hann) of the mono mix at 44.1 kHz: flatness of the power
spectrum, flux between unit-norm magnitude spectra, skewness and excess kurtosis of the magnitude
spectrum as a distribution over frequency (essentia's ``Flatness``, ``Flux``, ``CentralMoments``,
``DistributionShape`` definitions, computed for all frames at once). The median over frames keeps a
few transients from dominating.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track

if TYPE_CHECKING:
    import numpy as np

SPEC = BackendSpec(
    name="spectral",
    version="1",
    description="spectral flatness, flux, skewness, kurtosis (median over frames of the mix)",
    keys=("spectral_flatness", "spectral_flux", "spectral_skewness", "spectral_kurtosis"),
    audio=(AudioNeed("mix", 44100),),
    timeout_s=600,
)

RATE = 44100
FRAME = 2048
HOP = 1024
# Frames quieter than this (frame RMS, dBFS) are dither or fades: their spectral shape describes
# noise floor, not the music, and flatness/flux of near-silence is unstable.
QUIET_DBFS = -80.0


def frame_matrix(audio, frame: int = FRAME, hop: int = HOP):
    """Frames ``[n, frame]`` of mono ``audio`` as a strided view (no copy), the first starting at
    sample 0 and the last ending inside the signal (no zero padding, which would fake silence)."""
    import numpy as np

    count = 1 + (len(audio) - frame) // hop
    return np.lib.stride_tricks.as_strided(audio, shape=(count, frame),
                                           strides=(audio.strides[0] * hop, audio.strides[0]),
                                           writeable=False)


def frame_features(audio, *, block: int = 2048) -> "dict[str, np.ndarray]":
    """Per-frame values of the four features for mono float32 ``audio`` at 44.1 kHz.

    The formulas are those of essentia's ``Flatness``, ``Flux(norm="L2")``, ``CentralMoments``
    (mode "pdf", range = Nyquist) and ``DistributionShape``, evaluated on all frames at once: one
    essentia call per frame costs ~50 µs of Python overhead each, far over the time budget.
    ``tests/test_spectral.py`` checks this against essentia's per-frame algorithms.
    Frames under ``QUIET_DBFS`` are skipped; flux is kept only where the previous frame was kept
    too, so fades into silence do not count as spectral change.
    """
    import numpy as np
    import scipy.fft

    frames = frame_matrix(audio)
    window = np.hanning(FRAME + 1)[:FRAME].astype(np.float32)  # periodic Hann, as essentia's
    window *= 2.0 / window.sum()  # essentia's "normalized" window: unit gain for a DC input
    # Powers 0..4 of frequency (as a fraction of Nyquist: skewness and kurtosis do not depend on
    # the unit) turn the four moments of every frame into one matrix product.
    bins = np.linspace(0.0, 1.0, FRAME // 2 + 1)
    powers = np.stack([bins ** k for k in range(5)], axis=1)
    quiet_ms = 10 ** (QUIET_DBFS / 10)
    out = {"flatness": [], "flux": [], "skewness": [], "kurtosis": []}
    previous_unit = None
    previous_kept = False
    # Blocks of frames bound the memory to a few tens of MB whatever the track length.
    for start in range(0, len(frames), block):
        chunk = frames[start:start + block]
        loud = np.einsum("ij,ij->i", chunk, chunk, dtype=np.float64) / FRAME > quiet_ms
        mag = np.abs(scipy.fft.rfft(chunk * window, axis=1))
        norm = np.linalg.norm(mag, axis=1)
        kept = loud & (norm > 0)
        unit = mag / np.where(norm > 0, norm, 1.0)[:, None]
        # Unit-norm spectra make flux level-independent: sqrt(2 - 2 cos angle), within [0, sqrt 2].
        before = np.vstack([previous_unit if previous_unit is not None else np.zeros_like(unit[:1]), unit[:-1]])
        flux = np.linalg.norm(unit - before, axis=1)
        kept_before = np.concatenate([[previous_kept], kept[:-1]])
        previous_unit, previous_kept = unit[-1:], bool(kept[-1])

        mag = mag[kept]
        power = np.square(mag) + np.float32(1e-20)  # a zero bin would make the geometric mean 0
        flatness = np.exp(np.mean(np.log(power), axis=1, dtype=np.float64)) / np.mean(power, axis=1, dtype=np.float64)
        raw = mag.astype(np.float64) @ powers  # sums of magnitude x f^k, k = 0..4
        e1, e2, e3, e4 = (raw[:, k] / raw[:, 0] for k in range(1, 5))
        m2 = e2 - e1 ** 2
        m3 = e3 - 3 * e1 * e2 + 2 * e1 ** 3
        m4 = e4 - 4 * e1 * e3 + 6 * e1 ** 2 * e2 - 3 * e1 ** 4
        out["flatness"].append(flatness)
        out["flux"].append(flux[kept & kept_before])
        out["skewness"].append(m3 / m2 ** 1.5)
        out["kurtosis"].append(m4 / m2 ** 2 - 3.0)
    return {name: np.concatenate(parts) for name, parts in out.items()}


class Spectral(Extractor):
    def process(self, track: Track) -> Result:
        import numpy as np

        from backends.dsp import mono
        from backends.protocol import BadInput

        data, rate = track.audio("mix", RATE)
        if data.shape[0] < FRAME:
            raise BadInput(f"{track.mix.path}: {data.shape[0] / rate * 1000:.0f} ms is shorter than one "
                           f"{FRAME / rate * 1000:.0f} ms analysis frame")
        values = frame_features(mono(data))
        features = {}
        for name, series in values.items():
            key = f"spectral_{name}"
            if len(series):
                features[key] = float(np.median(series))
            else:
                features[key] = None
                track.note(key, f"no frame louder than {QUIET_DBFS:g} dBFS"
                           + (" with a loud frame before it" if name == "flux" else ""))
        return Result(features)


def create() -> Spectral:
    from importlib.metadata import version

    return Spectral(model_provenance={"libraries": f"numpy {version('numpy')}"})
