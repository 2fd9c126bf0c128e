"""Rhythm descriptors computed from beat and onset times (pure NumPy, no audio).

All times are in seconds. Functions return ``None`` where the measure is undefined for the input
(too few beats or onsets): mirdeck writes ``null`` then, never a default that looks real.
"""
from __future__ import annotations

import numpy as np

# Fewer beats than this and a tempo is not defined: 3 intervals are the least that show a pulse.
MIN_BEATS_FOR_TEMPO = 4
# An onset is "on the beat" when it lies within this fraction of the beat period of a beat:
# 10 % is 34 ms at 174 BPM and 67 ms at 90 BPM, well under the eighth-note offset (50 %).
ON_BEAT_TOLERANCE = 0.10
# IOI histogram for rhythmic complexity: 1/6-octave bins from 1/32 s to 4 s (42 bins).
IOI_BIN_EDGES = 2.0 ** np.arange(-5.0, 2.0 + 1e-9, 1.0 / 6.0)
# Onset density windows for the stems.
DENSITY_WINDOW_S = 4.0
DENSITY_HOP_S = 2.0


# A tracker answer is taken at double tempo when at least this share of the midpoints between
# beats carry an onset at least this strong relative to the on-beat onsets (median strengths):
# the pulse a listener taps is then the faster one (a click every 345 ms is 174 BPM, not 87).
DOUBLE_PULSE_COVERAGE = 0.8
DOUBLE_PULSE_STRENGTH = 0.75


def _strongest_near(targets: np.ndarray, onsets: np.ndarray, strengths: np.ndarray,
                    reach: float) -> tuple[np.ndarray, np.ndarray]:
    """For each target time, the strongest onset within ``reach`` s: (time, strength), NaN if none."""
    times = np.full(len(targets), np.nan)
    peak = np.full(len(targets), np.nan)
    lo = np.searchsorted(onsets, targets - reach, side="left")
    hi = np.searchsorted(onsets, targets + reach, side="right")
    for i, (a, b) in enumerate(zip(lo, hi)):
        if b > a:
            j = a + int(np.argmax(strengths[a:b]))
            times[i], peak[i] = onsets[j], strengths[j]
    return times, peak


# A run of this many beats is tested for machine timing: long enough for a line fit to average
# the onset detector's frame jitter out, short enough that a tempo drift stays under it.
STEADY_RUN_BEATS = 16
# A run whose snapped beats sit this close to a line (median absolute deviation) was played to a
# clock: the onset detector's 11.6 ms frames alone give 2.9 ms on exact clicks, a drummer's 10 ms
# spread about 7 ms.
MACHINE_TIMED_MAD_S = 0.004
# Beats further than this many deviations from the line (and 4 ms) went to another instrument's
# onset; a run with more than a fifth of them is not on a line.
OUTLIER_SPREAD = 3.0
MIN_INLIER_SHARE = 0.8


def _line_fit(times: np.ndarray) -> np.ndarray | None:
    """The constant-tempo line through a run of beats when they were played to a clock, else None."""
    index = np.arange(len(times), dtype=np.float64)
    slope, offset = np.polyfit(index, times, 1)
    residual = times - (slope * index + offset)
    deviation = float(np.median(np.abs(residual - np.median(residual))))
    if deviation > MACHINE_TIMED_MAD_S:
        return None
    keep = np.abs(residual - np.median(residual)) <= max(OUTLIER_SPREAD * 1.4826 * deviation, 0.004)
    if keep.sum() < MIN_INLIER_SHARE * len(times):
        return None
    slope, offset = np.polyfit(index[keep], times[keep], 1)
    return slope * index + offset


def steady_runs(beats: np.ndarray) -> list[slice]:
    """Slices of at least ``STEADY_RUN_BEATS // 2`` beats, at most about ``STEADY_RUN_BEATS``,
    with no interval more than 20 % off the run's median (a gap or a tempo change ends a run)."""
    if len(beats) < STEADY_RUN_BEATS // 2:
        return []
    intervals = np.diff(beats)
    typical = float(np.median(intervals))
    breaks = np.flatnonzero(np.abs(intervals - typical) > 0.2 * typical) + 1
    runs = []
    for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(beats)]):
        count = stop - start
        if count < STEADY_RUN_BEATS // 2:
            continue
        chunks = max(1, count // STEADY_RUN_BEATS)
        edges = np.linspace(start, stop, chunks + 1).round().astype(int)
        runs += [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]
    return runs


def snap_beats(beats: np.ndarray, onsets: np.ndarray, strengths: np.ndarray) -> np.ndarray:
    """The beat grid fitted to the onsets.

    essentia's trackers place beats on their own frame grid, 15-30 ms off the attack, so each beat
    is first moved to the strongest onset within ``ON_BEAT_TOLERANCE`` beat periods. On music
    played to a clock that per-beat snap only adds the detector's frame jitter and, where a hat or
    a clap is louder than the kick, a jump to the wrong instrument: where a run of beats lies on a
    line (``MACHINE_TIMED_MAD_S``), the grid is that line, through the attacks. Where the
    snapped beats leave every line (a drummer), each beat keeps its own onset.
    """
    if len(beats) < 2 or len(onsets) == 0:
        return beats
    reach = ON_BEAT_TOLERANCE * float(np.median(np.diff(beats)))
    times, _ = _strongest_near(beats, onsets, strengths, reach)
    snapped = np.unique(np.where(np.isnan(times), beats, times))
    grid = snapped.copy()
    for run in steady_runs(snapped):
        fit = _line_fit(snapped[run])
        if fit is not None:
            grid[run] = fit
    return np.unique(grid)


def doubled_pulse(beats: np.ndarray, onsets: np.ndarray, strengths: np.ndarray) -> bool:
    """True when the onsets halfway between beats are nearly as strong and as regular as those
    on the beats, i.e. the tracker locked onto every second pulse."""
    if len(beats) < MIN_BEATS_FOR_TEMPO or len(onsets) == 0:
        return False
    half = 0.5 * float(np.median(np.diff(beats)))
    reach = ON_BEAT_TOLERANCE * half
    _, on_beat = _strongest_near(beats, onsets, strengths, 2 * reach)
    _, between = _strongest_near(insert_midpoints(beats)[1::2], onsets, strengths, reach)
    if np.all(np.isnan(on_beat)) or np.mean(~np.isnan(between)) < DOUBLE_PULSE_COVERAGE:
        return False
    return bool(np.nanmedian(between) >= DOUBLE_PULSE_STRENGTH * np.nanmedian(on_beat))


def insert_midpoints(beats: np.ndarray) -> np.ndarray:
    """The beats with one beat added halfway between each neighbouring pair."""
    mids = 0.5 * (beats[:-1] + beats[1:])
    out = np.empty(len(beats) + len(mids))
    out[0::2], out[1::2] = beats, mids
    return out


def beat_regularity(beats: np.ndarray, sections: list[np.ndarray] | None = None) -> float | None:
    """Standard deviation of the inter-beat intervals, seconds (0 = a perfectly steady grid).
    With ``sections`` (a mask per pulsed section), the gaps between sections are not intervals."""
    if len(beats) < MIN_BEATS_FOR_TEMPO:
        return None
    if sections and len(sections) > 1:
        intervals = np.concatenate([np.diff(beats[mask]) for mask in sections])
        return float(np.std(intervals)) if len(intervals) else None
    return float(np.std(np.diff(beats)))


def on_beat_mask(onsets: np.ndarray, beats: np.ndarray) -> np.ndarray | None:
    """True for each onset within ``ON_BEAT_TOLERANCE`` beat periods of the nearest beat."""
    if len(beats) < MIN_BEATS_FOR_TEMPO:
        return None
    period = float(np.median(np.diff(beats)))
    right = np.clip(np.searchsorted(beats, onsets), 1, len(beats) - 1)
    nearest = np.minimum(np.abs(onsets - beats[right - 1]), np.abs(onsets - beats[right]))
    return nearest <= ON_BEAT_TOLERANCE * period


def syncopation(onsets: np.ndarray, strengths: np.ndarray, beats: np.ndarray) -> float | None:
    """Share of onset strength that falls off the beat, 0..1 (0: every accent on a beat)."""
    mask = on_beat_mask(onsets, beats)
    total = float(np.sum(strengths))
    if mask is None or len(onsets) == 0 or total <= 0:
        return None
    return float(np.sum(strengths[~mask]) / total)


def on_beat_ratio(onsets: np.ndarray, beats: np.ndarray) -> float | None:
    """Share of onsets (counted, not weighted) that fall on a beat, 0..1."""
    mask = on_beat_mask(onsets, beats)
    if mask is None or len(onsets) == 0:
        return None
    return float(np.mean(mask))


def inter_onset_intervals(onsets: np.ndarray) -> np.ndarray:
    return np.diff(np.sort(onsets))


def ioi_stats(onsets: np.ndarray) -> tuple[float | None, float | None]:
    """Mean and standard deviation of the inter-onset intervals, seconds."""
    ioi = inter_onset_intervals(onsets)
    if len(ioi) < 2:
        return None, None
    return float(np.mean(ioi)), float(np.std(ioi))


def rhythmic_complexity(onsets: np.ndarray) -> float | None:
    """Normalised Shannon entropy of the IOI histogram (1/6-octave bins, 1/32 s to 4 s), 0..1.

    0: every interval the same (a metronome); 1: intervals spread evenly over all 42 bins.
    Intervals outside the range count in the first or last bin.
    """
    ioi = inter_onset_intervals(onsets)
    if len(ioi) < 2:
        return None
    clipped_to_range = np.clip(ioi, IOI_BIN_EDGES[0], IOI_BIN_EDGES[-1])
    counts, _ = np.histogram(clipped_to_range, bins=IOI_BIN_EDGES)
    p = counts[counts > 0] / counts.sum()
    return float(np.sum(p * np.log2(1.0 / p)) / np.log2(len(IOI_BIN_EDGES) - 1))


def rhythmic_evenness(onsets: np.ndarray) -> float | None:
    """1 / (1 + coefficient of variation of the IOIs), in (0, 1]; 1 = perfectly even spacing."""
    ioi = inter_onset_intervals(onsets)
    if len(ioi) < 2 or np.mean(ioi) <= 0:
        return None
    return float(1.0 / (1.0 + np.std(ioi) / np.mean(ioi)))


def windowed_onset_density(onsets: np.ndarray, duration: float) -> np.ndarray:
    """Onsets per second in 4 s windows every 2 s (whole windows only; one shorter window if the
    audio is under 4 s)."""
    if duration <= DENSITY_WINDOW_S:
        return np.array([len(onsets) / duration]) if duration > 0 else np.array([])
    starts = np.arange(0.0, duration - DENSITY_WINDOW_S + 1e-9, DENSITY_HOP_S)
    onsets = np.sort(onsets)
    lo = np.searchsorted(onsets, starts, side="left")
    hi = np.searchsorted(onsets, starts + DENSITY_WINDOW_S, side="left")
    return (hi - lo) / DENSITY_WINDOW_S
