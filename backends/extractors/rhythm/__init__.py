"""Beats, tempo, onsets and rhythm descriptors of the mix and of the bass, drums and other stems.

Beats come from essentia's multi-feature beat tracker (what RhythmExtractor2013, method
"multifeature", runs) on the mix at 44.1 kHz, its five onset functions computed from one shared
spectrogram (``beat_tracker.py`` beside this file: the same beats and confidence as essentia's own);
onsets from librosa's spectral-flux onset detector at 22.05 kHz with an 11.6 ms hop (essentia's
onset detectors missed or delayed clean clicks by ~30 ms in our tests, librosa's land within 12 ms;
22.05 kHz is librosa's own default rate). The tracker's beats lag or lead the audio by 15-30 ms, so
each beat is moved to the strongest onset near it, or a run played to a clock onto the line
through its attacks (see ``measures.snap_beats``); tempo and grid come from the sections where
the trackers agree there is a pulse (``sections.py``), and a tracker
answer at half the pulse is doubled when the onsets show the pulse (``measures.doubled_pulse``).
essentia has no downbeat tracker, so no ``.DOWNBEATS`` file is written. The descriptors built on
these times live in ``measures.py``; every key is defined in docs/features.md.
"""
from __future__ import annotations

from backends.extractors.rhythm.onsets import ONSET_FFT, ONSET_HOP, ONSET_RATE, detect_onsets
from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track

RATE = 44100  # the beat tracker's rate
RHYTHM_STEMS = ("bass", "drums", "other")
STEM_KEYS = ("onset_density_average", "onset_density_variance", "syncopation",
             "rhythmic_complexity", "rhythmic_evenness")

SPEC = BackendSpec(
    name="rhythm",
    version="2",
    description="beat grid, tempo, onsets, syncopation and rhythm descriptors (essentia)",
    keys=("bpm", "bpm_is_defined", "beat_confidence", "beat_count", "beat_regularity",
          "onset_count", "onset_density", "onset_strength_mean", "onset_strength_std",
          "syncopation", "on_beat_ratio", "rhythmic_complexity", "rhythmic_evenness",
          "ioi_mean", "ioi_std"),
    optional_keys=tuple(f"{key}_{stem}" for stem in RHYTHM_STEMS for key in STEM_KEYS),
    audio=(AudioNeed("mix", RATE), AudioNeed("mix", ONSET_RATE))
    + tuple(AudioNeed(s, ONSET_RATE, required=False) for s in RHYTHM_STEMS),
    timeout_s=600,
    sidecars=("BEATS_GRID", "ONSETS"),
)

# The multi-feature tracker needs a few bars to settle; shorter audio has no meaningful tempo.
MIN_SECONDS = 5.0
# essentia rates the multi-feature confidence 0..5 (documented as 0..5.32), < 1 "very low" and 1-1.5 "low". A steady
# sine scored 1.14 and white noise 0.37 here, click tracks 3.5-4.2: below 1.5 the beats are not a
# pulse a listener would tap, so the tempo is reported as undefined (null).
MIN_BEAT_CONFIDENCE = 1.5
MAX_BPM = 208


class Rhythm(Extractor):
    def __init__(self):
        super().__init__(device="cpu", model_provenance={
            "library": "essentia-tensorflow 2.1b6.dev1389",
            "beats": "essentia multi-feature beat tracker (BeatTrackerMultiFeature's onset "
                     "functions from one spectrogram, TempoTapDegara, max agreement; "
                     "minTempo=40, maxTempo=208), tempo as RhythmExtractor2013",
            "onsets": f"librosa.onset.onset_strength/onset_detect(sr={ONSET_RATE}, "
                      f"n_fft={ONSET_FFT}, hop_length={ONSET_HOP})"})
        from backends.extractors.rhythm.beat_tracker import MultiFeatureBeatTracker

        self._beats = MultiFeatureBeatTracker(min_tempo=40, max_tempo=MAX_BPM)

    def _mono(self, track, source, rate):
        import numpy as np

        from backends.audio import to_mono
        from backends.protocol import BadInput

        data, _ = track.audio(source, rate)
        mono = np.ascontiguousarray(to_mono(np.asarray(data)), dtype=np.float32)
        path = track.sources[source].path
        if len(mono) < MIN_SECONDS * rate and source == "mix":
            raise BadInput(f"{path}: {len(mono) / rate:.2f} s of audio is too short for beat "
                           f"tracking (needs at least {MIN_SECONDS:g} s)")
        return mono

    def process(self, track: Track) -> Result:
        import numpy as np

        from backends.extractors.rhythm import measures as rm
        from backends.extractors.rhythm.beat_tracker import max_agreement, tempo
        from backends.extractors.rhythm.sections import WINDOW_S, covered, pulsed_sections, within
        from backends.protocol import BadInput

        mix = self._mono(track, "mix", RATE)
        if not np.any(mix):
            raise BadInput(f"{track.mix.path}: the audio is all zeros (digital silence): "
                           "no beats or onsets to analyse")
        duration = len(mix) / RATE
        track.progress(0.05, "beats")
        candidates = self._beats.candidates(mix)
        whole_confidence = max_agreement(candidates)[1]
        # Tempo and grid from the sections with a pulse (all of a steady track; none of noise).
        spans = pulsed_sections(candidates, duration, MIN_BEAT_CONFIDENCE)
        if not spans and whole_confidence >= MIN_BEAT_CONFIDENCE:
            spans = [(0.0, duration)]  # agreed over the whole, if in no window alone
        ticks, confidence = max_agreement([c[within(c, spans)] for c in candidates]) if spans \
            else max_agreement(candidates)
        bpm = tempo(ticks)
        track.progress(0.6, "onsets")
        onsets, strengths = detect_onsets(self._mono(track, "mix", ONSET_RATE))
        beats = rm.snap_beats(np.asarray(ticks, dtype=np.float64), onsets, strengths)
        if 2 * bpm <= MAX_BPM and rm.doubled_pulse(beats, onsets, strengths):
            beats, bpm = rm.snap_beats(rm.insert_midpoints(beats), onsets, strengths), 2 * bpm
        if spans:  # no beat in the gaps between pulsed sections (midpoints across a gap land there)
            beats = beats[within(beats, spans)]
        defined = bool(spans) and len(beats) >= rm.MIN_BEATS_FOR_TEMPO and confidence >= MIN_BEAT_CONFIDENCE
        grid = beats if defined else np.zeros(0)
        if not defined:
            spans = []
            track.note("bpm", f"no clear pulse: {len(beats)} beats at tracker confidence "
                              f"{whole_confidence:.2f} (needs {rm.MIN_BEATS_FOR_TEMPO} and {MIN_BEAT_CONFIDENCE}), "
                              f"in no {WINDOW_S:g} s section either")
        # Syncopation and on-beat share: only the onsets where there is a grid to be on or off.
        gridded = within(onsets, spans)
        pulse = {"share": round(covered(spans) / duration, 3) if duration else 0.0,
                 "sections_s": [[round(lo, 2), round(hi, 2)] for lo, hi in spans],
                 "whole_track_confidence": round(float(whole_confidence), 3)}
        ioi_mean, ioi_std = rm.ioi_stats(onsets)
        features = {
            "bpm": float(bpm) if defined else None,
            "bpm_is_defined": int(defined),
            "beat_confidence": float(confidence),
            "beat_count": int(len(beats)),
            "beat_regularity": rm.beat_regularity(beats, [within(beats, [span]) for span in spans]),
            "onset_count": int(len(onsets)),
            "onset_density": len(onsets) / duration,
            "onset_strength_mean": float(np.mean(strengths)) if len(strengths) else None,
            "onset_strength_std": float(np.std(strengths)) if len(strengths) else None,
            "syncopation": rm.syncopation(onsets[gridded], strengths[gridded], grid),
            "on_beat_ratio": rm.on_beat_ratio(onsets[gridded], grid),
            "rhythmic_complexity": rm.rhythmic_complexity(onsets),
            "rhythmic_evenness": rm.rhythmic_evenness(onsets),
            "ioi_mean": ioi_mean,
            "ioi_std": ioi_std,
        }
        present = [s for s in RHYTHM_STEMS if track.has(s)]
        for i, stem in enumerate(present):
            track.progress(0.7 + 0.3 * i / len(present), f"onsets {stem}")
            audio = self._mono(track, stem, ONSET_RATE)
            times, weights = detect_onsets(audio)
            density = rm.windowed_onset_density(times, len(audio) / ONSET_RATE)
            on_grid = within(times, spans)
            features.update({
                f"onset_density_average_{stem}": float(np.mean(density)),
                f"onset_density_variance_{stem}": float(np.var(density)),
                f"syncopation_{stem}": rm.syncopation(times[on_grid], weights[on_grid], grid),
                f"rhythmic_complexity_{stem}": rm.rhythmic_complexity(times),
                f"rhythmic_evenness_{stem}": rm.rhythmic_evenness(times),
            })
        files = {
            "BEATS_GRID": track.write_sidecar("BEATS_GRID", "".join(f"{t:.4f}\n" for t in beats)),
            "ONSETS": track.write_sidecar("ONSETS", "".join(f"{t:.4f}\n" for t in onsets)),
        }
        return Result(features, files=files, provenance={"pulse": pulse})


def create() -> Rhythm:
    from backends.extractors.rhythm.warmup import warm

    warm()  # before hello: parallel workers must not write librosa's numba cache at once
    return Rhythm()
