"""How much the harmony of the bass and "other" stems moves over time.

Each stem's 12-bin pitch-class profile (essentia ``HPCP``, the chroma module's front end) is
averaged over windows of ``WINDOW_FRAMES`` frames (≈ 1 s, about a chord's length at common
tempi) and each window profile is scaled to sum 1 (a distribution over pitch classes):

- ``harmonic_movement_<stem>``: mean cosine distance (1 − cos) between consecutive windows'
  profiles, in [0, 1]; 0 = the same pitch classes throughout, 1 = each second shares no pitch
  class with the one before.
- ``harmonic_variance_<stem>``: total variance over windows of the profile (sum over the 12
  pitch classes of each one's variance), in [0, 11/12]; 0 = a constant pitch-class mix.

Windows with no pitched frame (silence, rests) are left out, and a pair of windows only counts
for movement when both are pitched and adjacent in time.
"""
from __future__ import annotations

from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track

HARMONIC_STEMS = ("bass", "other")

SPEC = BackendSpec(
    name="harmonic",
    version="1",
    description="harmonic movement and variance of the bass and other stems (pitch-class profiles over time)",
    keys=(),
    optional_keys=tuple(f"harmonic_{k}_{s}" for s in HARMONIC_STEMS for k in ("movement", "variance")),
    needs_one_of=HARMONIC_STEMS,  # a full mix alone has nothing for it to measure
    # The mix is not analysed; declaring it (shared with chroma and spectral at the same rate)
    # gives the worker the track's duration, so the realtime factor is reported.
    audio=(AudioNeed("mix", 44100),) + tuple(AudioNeed(s, 44100, required=False) for s in HARMONIC_STEMS),
    timeout_s=600,
)

RATE = 44100
# 11 frames of 4096 samples at 44.1 kHz = 1.02 s.
WINDOW_FRAMES = 11


def window_profiles(profiles, kept):
    """Mean profile of each window of ``WINDOW_FRAMES`` frames, scaled to sum 1.

    Returns ``(windows [n, 12], pitched [n] bool)``; a window with no kept frame is not pitched.
    """
    import numpy as np

    count = len(profiles) // WINDOW_FRAMES
    frames = profiles[: count * WINDOW_FRAMES].reshape(count, WINDOW_FRAMES, 12)
    mask = kept[: count * WINDOW_FRAMES].reshape(count, WINDOW_FRAMES)
    sums = (frames * mask[:, :, None]).sum(axis=1, dtype=np.float64)
    totals = sums.sum(axis=1)
    pitched = totals > 0
    windows = sums / np.where(pitched, totals, 1.0)[:, None]
    return windows, pitched


def movement_and_variance(windows, pitched) -> tuple[float | None, float | None]:
    """(movement in [0, 1], variance in [0, 11/12]) of window profiles; None where undefined."""
    import numpy as np

    both = pitched[1:] & pitched[:-1]
    movement = None
    if both.any():
        a, b = windows[:-1][both], windows[1:][both]
        cosine = np.einsum("ij,ij->i", a, b) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        movement = float(np.mean(1.0 - cosine))
    variance = float(windows[pitched].var(axis=0).sum()) if pitched.sum() >= 2 else None
    return movement, variance


class Harmonic(Extractor):
    def __init__(self, es, **kwargs):
        super().__init__(**kwargs)
        self.es = es

    def process(self, track: Track) -> Result:
        from backends.dsp import mono, present_stems
        from backends.extractors.chroma import hpcp_frames

        features: dict[str, float | None] = {}
        stems = present_stems(track, HARMONIC_STEMS)
        for missing in set(HARMONIC_STEMS) - set(stems):
            track.note(f"harmonic_*_{missing}", f"no {missing} stem in this track")
        for i, stem in enumerate(stems):
            data, _ = track.audio(stem, RATE)
            profiles, kept = hpcp_frames(mono(data), self.es)
            movement, variance = movement_and_variance(*window_profiles(profiles, kept))
            for name, value, why in (
                    ("movement", movement, "fewer than two adjacent ~1 s windows with pitched sound"),
                    ("variance", variance, "fewer than two ~1 s windows with pitched sound")):
                key = f"harmonic_{name}_{stem}"
                features[key] = value
                if value is None:
                    track.note(key, f"{stem}: {why} (silent or shorter than 2 s)")
            track.progress((i + 1) / len(stems), stem)
        return Result(features)


def create() -> Harmonic:
    from backends.dsp import essentia_provenance, essentia_standard

    return Harmonic(essentia_standard(), model_provenance=essentia_provenance())
