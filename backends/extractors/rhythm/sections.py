"""Where in a track there is a pulse: the beat trackers' agreement, section by section.

essentia's confidence is one figure for the whole track, so a long ambient intro and outro pull a
track with a steady kick in between under the gate (a 7.7-minute track at 135 BPM scored 0.89
whole, 1.76 over its middle 330 s). Here the five trackers' beats are compared in overlapping
windows; each window's middle half counts as pulsed when they agree there as much as the gate
asks of a whole track. Tempo and grid then come from the pulsed sections only.
"""
from __future__ import annotations

import numpy as np

from backends.extractors.rhythm.beat_tracker import max_agreement

WINDOW_S = 30.0  # ~60 beats at 120 BPM: enough for the agreement histograms
HOP_S = 15.0


def window_starts(duration: float) -> np.ndarray:
    if duration <= WINDOW_S:
        return np.zeros(1)
    starts = np.arange(0.0, duration - WINDOW_S + 1e-9, HOP_S)
    if duration - (starts[-1] + WINDOW_S) > 1e-6:  # a last window ending with the track
        starts = np.append(starts, duration - WINDOW_S)
    return starts


def window_confidences(candidates: list[np.ndarray], duration: float) -> list[tuple[float, float, float]]:
    """(start, end, agreement 0-5) of each window; the first 5 s of the track are left out of the
    agreement, as essentia leaves them out (the trackers settle there)."""
    out = []
    for start in window_starts(duration):
        end = min(duration, start + WINDOW_S)
        inside = [c[(c >= start) & (c < end)] for c in candidates]
        out.append((float(start), float(end), max_agreement(inside)[1]))
    return out


def pulsed_sections(candidates: list[np.ndarray], duration: float, threshold: float) -> list[tuple[float, float]]:
    """Merged (start, end) spans, in seconds, of the windows whose agreement reaches ``threshold``.

    Each window stands for its middle (half a hop either side of its centre; the first and last
    windows reach the ends of the track), so neighbouring windows tile the track."""
    windows = window_confidences(candidates, duration)
    spans: list[tuple[float, float]] = []
    for i, (start, end, confidence) in enumerate(windows):
        if confidence < threshold:
            continue
        centre = 0.5 * (start + end)
        lo = 0.0 if i == 0 else max(0.0, 0.5 * (0.5 * (windows[i - 1][0] + windows[i - 1][1]) + centre))
        hi = duration if i == len(windows) - 1 else 0.5 * (centre + 0.5 * (windows[i + 1][0] + windows[i + 1][1]))
        if spans and lo <= spans[-1][1] + 1e-9:
            spans[-1] = (spans[-1][0], hi)
        else:
            spans.append((lo, hi))
    return spans


def within(times: np.ndarray, spans: list[tuple[float, float]]) -> np.ndarray:
    """True for each time inside one of the spans."""
    mask = np.zeros(len(times), bool)
    for lo, hi in spans:
        mask |= (times >= lo) & (times < hi)
    return mask


def covered(spans: list[tuple[float, float]]) -> float:
    return float(sum(hi - lo for lo, hi in spans))
