"""Loudness of the mix and each stem: EBU R128 / ITU-R BS.1770-4.

All three measures come from libebur128 (through pyebur128 0.1.1), one pass per signal:
``lufs`` is BS.1770-4 integrated loudness (K-weighting, 400 ms blocks, −70 LUFS absolute and
−10 LU relative gates), ``lra`` is EBU Tech 3342 loudness range. ``true_peak_dbtp`` is the 4×
oversampled peak (2× at 96 kHz and up, libebur128's choice) of libebur128's interpolator,
computed by ``backends/extractors/loudness/true_peak.py`` only on the blocks that can hold it (the same value to
1e-5 dB at a tenth of the cost on typical music; see that module). pyloudnorm's integrated loudness
is the independent check in the tests (within 0.1 LU); it is not used here because its gating is
a Python loop over blocks, much slower than libebur128 (docs/performance.md, ``benchmarks/dsp.py``).

Silence has no loudness (the measure is −inf): the key holds null and the reason is in the
module's provenance notes, never a floor that looks like a measurement.
"""
from __future__ import annotations

from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track

STEMS = ("drums", "bass", "other", "vocals")

SPEC = BackendSpec(
    name="loudness",
    version="1",  # the fast true peak gives libebur128's value (see backends/extractors/loudness/true_peak.py): no bump
    description="integrated loudness (LUFS), loudness range (LU), true peak (dBTP); per stem too",
    keys=("lufs", "lra", "true_peak_dbtp"),
    optional_keys=tuple(f"{k}_{s}" for s in STEMS for k in ("lufs", "lra")),
    # Native rate: BS.1770 filters are defined for any rate, so resampling would only add error.
    audio=(AudioNeed("mix", None),) + tuple(AudioNeed(s, None, required=False) for s in STEMS),
    timeout_s=600,
)

# BS.1770 gates each 400 ms block; a shorter signal has no block to measure.
MIN_SECONDS = 0.4
# EBU Tech 3342 measures short-term (3 s) loudness; fewer than one window gives no distribution.
LRA_MIN_SECONDS = 3.0


def measure(data, rate: int, *, true_peak: bool) -> dict[str, float | None | str]:
    """Loudness of one signal ``[frames, channels]``.

    Returns ``lufs`` (LUFS, typically −70…0), ``lra`` (LU, ≥ 0), ``true_peak_dbtp`` (dBTP, may
    exceed 0 for clipped masters) when asked, each None where undefined, with ``<key>_why``
    explaining each None.
    """
    import numpy as np
    import pyebur128 as ebur

    from backends.extractors.loudness.true_peak import true_peak as fast_true_peak

    frames, channels = data.shape
    out: dict[str, float | None | str] = {}
    modes = ebur.MeasurementMode
    state = ebur.R128State(channels, rate, modes.MODE_I | modes.MODE_LRA)
    # libebur128 wants one C-contiguous interleaved buffer; float32 is accepted as is (the
    # shared PCM is float32 C-order already, so this is the mapped file itself, not a copy).
    samples = np.ascontiguousarray(data, dtype=np.float32)
    state.add_frames(samples.reshape(-1), frames)
    lufs = ebur.get_loudness_global(state)
    if np.isfinite(lufs):
        out["lufs"] = float(lufs)
    else:
        out["lufs"], out["lufs_why"] = None, "silent: no 400 ms block above the −70 LUFS absolute gate"
    if out["lufs"] is None:
        out["lra"], out["lra_why"] = None, "silent: loudness range of silence is undefined"
    elif frames < LRA_MIN_SECONDS * rate:
        out["lra"], out["lra_why"] = None, f"shorter than one {LRA_MIN_SECONDS:g} s short-term window"
    else:
        out["lra"] = float(ebur.get_loudness_range(state))
    if true_peak:
        peak, _ = fast_true_peak(samples, rate)
        if peak > 0:
            out["true_peak_dbtp"] = float(20 * np.log10(peak))
        else:
            out["true_peak_dbtp"], out["true_peak_dbtp_why"] = None, "silent: every sample is zero"
    return out


class Loudness(Extractor):
    def process(self, track: Track) -> Result:
        from backends.dsp import present_stems
        from backends.protocol import BadInput

        features: dict[str, float | None] = {}
        jobs = [("mix", "", True)] + [(s, f"_{s}", False) for s in present_stems(track, STEMS)]
        for i, (source, suffix, true_peak) in enumerate(jobs):
            data, rate = track.audio(source)
            if data.shape[0] < MIN_SECONDS * rate:
                if source == "mix":
                    raise BadInput(f"{track.sources[source].path}: {data.shape[0] / rate * 1000:.0f} ms of "
                                   f"audio is shorter than one {MIN_SECONDS * 1000:.0f} ms loudness block")
                for key in ("lufs", "lra"):
                    features[key + suffix] = None
                    track.note(key + suffix, f"{source} is shorter than one 400 ms loudness block")
                continue
            for key, value in measure(data, rate, true_peak=true_peak).items():
                if key.endswith("_why"):
                    track.note(key[:-4] + suffix, f"{source}: {value}")
                else:
                    features[key + suffix] = value
            track.progress((i + 1) / len(jobs), source)
        return Result(features)


def create() -> Loudness:
    from importlib.metadata import version

    import pyebur128

    return Loudness(model_provenance={
        "libraries": f"pyebur128 {version('pyebur128')} (libebur128 {pyebur128.get_libebur128_version()})"})
