"""Basic facts of the full mix: length, rate, channels, level and clipping.

Stable Audio Tools conditions on track length, so ``duration_seconds`` is a real feature.
"""
from __future__ import annotations

from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(
    name="audio_info",
    version="1",
    description="duration, sample rate, channels, peak and RMS level, clipping ratio",
    keys=("duration_seconds", "sample_rate", "channels", "peak_dbfs", "rms_dbfs", "clipping_ratio"),
    audio=(AudioNeed("mix", None),),
    timeout_s=120,
)

# A sample this close to full scale is counted as clipped: decoders of 16-bit audio give
# 32767/32768 for a clipped sample, never exactly 1.0.
CLIP_LEVEL = 32767 / 32768


class AudioInfo(Extractor):
    def process(self, track: Track) -> Result:
        import numpy as np

        data, rate = track.audio("mix")
        mix = track.mix
        peak = float(np.max(np.abs(data))) if data.size else 0.0
        # float64 accumulation: a float32 sum over hours of audio loses precision.
        mean_square = float(np.mean(np.square(data, dtype=np.float64))) if data.size else 0.0
        clipped = int(np.count_nonzero(np.abs(data) >= CLIP_LEVEL))
        if peak == 0:
            for key in ("peak_dbfs", "rms_dbfs"):
                track.note(key, "digital silence: every sample is zero, which has no level in dB")
        return Result({
            "duration_seconds": round(mix.duration, 6),
            "sample_rate": int(rate),
            "channels": int(mix.channels),
            # Silence has no level in dB: null, not a made-up floor.
            "peak_dbfs": round(20 * np.log10(peak), 4) if peak > 0 else None,
            "rms_dbfs": round(10 * np.log10(mean_square), 4) if mean_square > 0 else None,
            "clipping_ratio": clipped / data.size if data.size else 0.0,
        })


def create() -> AudioInfo:
    return AudioInfo()
