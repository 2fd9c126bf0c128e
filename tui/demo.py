"""The built-in demo dataset: a few synthesised tracks whose tempo, key and level are known.

Used as the main job's default (``mirdeck demo``) and by the tests as ground truth.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RATE = 44100
NOTE_A4 = 440.0
TRUTH_FILE = ".mirdeck-demo.json"


def midi_hz(note: int) -> float:
    return NOTE_A4 * 2 ** ((note - 69) / 12)


def _env(n: int, attack: float, decay: float) -> np.ndarray:
    t = np.arange(n) / RATE
    return np.minimum(1.0, t / max(attack, 1e-4)) * np.exp(-t / decay)


def _place(buffer: np.ndarray, start: float, sound: np.ndarray) -> None:
    i = int(round(start * RATE))
    if i >= len(buffer):
        return
    end = min(len(buffer), i + len(sound))
    buffer[i:end] += sound[: end - i]


def drums(bpm: float, seconds: float, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(int(seconds * RATE), dtype=np.float64)
    beat = 60.0 / bpm
    n_kick = int(0.25 * RATE)
    t = np.arange(n_kick) / RATE
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-t * 30)) * t) * _env(n_kick, 0.001, 0.12)
    n_snare = int(0.2 * RATE)
    snare = rng.standard_normal(n_snare) * _env(n_snare, 0.001, 0.05) * 0.5
    n_hat = int(0.05 * RATE)
    hat = np.diff(rng.standard_normal(n_hat + 1)) * _env(n_hat, 0.0005, 0.01) * 0.15
    for i in range(int(seconds / beat)):
        _place(out, i * beat, kick * 0.9)
        if i % 2 == 1:
            _place(out, i * beat, snare)
        _place(out, i * beat, hat)
        _place(out, i * beat + beat / 2, hat)
    return out


def tone(freqs: list[float], seconds: float, *, partials: int = 4, decay: float = 2.0) -> np.ndarray:
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    out = np.zeros(n)
    for f in freqs:
        for k in range(1, partials + 1):
            if f * k < RATE / 2:
                out += np.sin(2 * np.pi * f * k * t) / k
    return out * _env(n, 0.01, decay) / max(1, len(freqs))


def progression(chords: list[list[int]], bpm: float, seconds: float, beats_per_chord: int = 4) -> np.ndarray:
    out = np.zeros(int(seconds * RATE))
    span = beats_per_chord * 60.0 / bpm
    for i in range(int(seconds / span) + 1):
        chord = chords[i % len(chords)]
        _place(out, i * span, tone([midi_hz(n) for n in chord], span, decay=span))
    return out


def bassline(roots: list[int], bpm: float, seconds: float, beats_per_chord: int = 4) -> np.ndarray:
    out = np.zeros(int(seconds * RATE))
    beat = 60.0 / bpm
    for i in range(int(seconds / beat) + 1):
        root = roots[(i // beats_per_chord) % len(roots)]
        _place(out, i * beat, tone([midi_hz(root)], beat * 0.9, partials=3, decay=beat / 2))
    return out


def _stereo(mono: np.ndarray, width: float = 0.0) -> np.ndarray:
    return np.stack([mono * (1 - width), mono * (1 + width)], axis=1)


def _normalise(x: np.ndarray, peak_db: float) -> np.ndarray:
    peak = np.max(np.abs(x))
    return x if peak == 0 else x * (10 ** (peak_db / 20) / peak)


# (name, bpm, key, chords as MIDI notes, bass roots, seconds, stems as files, format)
TRACKS = [
    ("Demo Band - Groove in A minor", 120.0, "A minor",
     # i - iv - V - i with the raised seventh (G#): Am-F-C-G would read as C major.
     [[57, 60, 64], [50, 53, 57], [52, 56, 59], [57, 60, 64]], [45, 38, 40, 45], 30.0, True, "flac"),
    ("Demo Band - E♭ Major Pulse", 128.0, "Eb major",
     [[51, 55, 58], [56, 60, 63], [58, 62, 65], [51, 55, 58]], [39, 44, 46, 39], 24.0, False, "wav"),
]


def create(folder: str | Path, *, seed: int = 7) -> dict:
    """Write the demo dataset into ``folder``; existing audio files are left as they are.

    Returns the ground truth (also written to ``.mirdeck-demo.json``).
    """
    import soundfile

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth: dict[str, dict] = {}

    def write(path: Path, data: np.ndarray, fmt: str) -> None:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(path, data.astype(np.float32), RATE, format=fmt.upper(),
                            subtype="PCM_16" if fmt in ("flac", "wav") else None)

    for name, bpm, key, chords, roots, seconds, with_stems, fmt in TRACKS:
        d = _stereo(drums(bpm, seconds, rng))
        b = _stereo(bassline(roots, bpm, seconds) * 0.6)
        o = _stereo(progression(chords, bpm, seconds) * 0.5, width=0.2)
        mix = d + b + o
        scale = 10 ** (-1.0 / 20) / np.max(np.abs(mix))
        track_dir = folder / name
        write(track_dir / f"full_mix.{fmt}", mix * scale, fmt)
        if with_stems:
            for stem, signal in (("drums", d), ("bass", b), ("other", o)):
                write(track_dir / f"{stem}.{fmt}", signal * scale, fmt)
        truth[name] = {"bpm": bpm, "key": key, "seconds": seconds,
                       "stems": ["drums", "bass", "other"] if with_stems else []}

    quiet = folder / "Quiet Room - Near Silence"
    write(quiet / "full_mix.flac", _stereo(rng.standard_normal(20 * RATE) * 10 ** (-70 / 20)), "flac")
    truth[quiet.name] = {"bpm": None, "key": None, "seconds": 20.0, "stems": []}

    short = folder / "Tiny - Blip"
    write(short / "full_mix.wav", _stereo(_normalise(tone([midi_hz(69)], 1.5), -6.0)), "wav")
    truth[short.name] = {"bpm": None, "key": None, "seconds": 1.5, "stems": []}

    (folder / TRUTH_FILE).write_text(json.dumps(truth, indent=2, ensure_ascii=False), encoding="utf-8")
    return truth
