"""Many .INFO files like a full run leaves, from a seeded generator: the export benchmark's 10,000
tracks and the dataset screen's deterministic snapshots. The audio is an empty ``full_mix.flac``
(the scan needs only its name), so nothing here decodes."""
from __future__ import annotations

import json
import random
from pathlib import Path

GENRES = [f"Electronic---Style {i}" for i in range(40)]
MOODS = [f"mood/theme---m{i}" for i in range(20)]
KEYS = ["C", "G", "D", "A", "E", "B", "F#", "Db", "Ab", "Eb", "Bb", "F"]
MODULES = ("audio_info", "loudness", "rhythm", "chroma", "timbral", "audiobox", "essentia_tf", "flamingo_gguf")


def info(rng: random.Random) -> dict:
    r = lambda a, b, n=2: round(rng.uniform(a, b), n)  # noqa: E731
    features = {
        "duration_seconds": r(60, 400, 3), "sample_rate": 44100, "channels": 2,
        "peak_dbfs": r(-6, 0), "rms_dbfs": r(-30, -8), "clipping_ratio": round(rng.random() * 2e-4, 6),
        "lufs": round(rng.gauss(-12, 3), 2), "lra": round(abs(rng.gauss(6, 3)), 2), "true_peak_dbtp": r(-3, 1),
        "bpm": r(70, 180), "bpm_is_defined": 1, "beat_confidence": r(0, 4),
        "scale": rng.choice(["major", "minor"]), "key_strength": r(0, 1),
        **{f"chroma_{k}": r(0, 1) for k in range(12)},
        **{k: r(0, 100) for k in ("brightness", "roughness", "hardness", "depth", "booming",
                                  "reverberation", "sharpness", "warmth")},
        **{k: r(1, 10) for k in ("content_enjoyment", "content_usefulness", "production_complexity",
                                 "production_quality")},
        "essentia_genre": {g: r(0.1, 1, 4) for g in rng.sample(GENRES, 4)},
        "essentia_mood": {m: r(0.1, 1, 4) for m in rng.sample(MOODS, 3)},
        "danceability": r(0, 1),
        "music_flamingo_full": "A synthetic caption of about this length, describing the track. " * 4,
    }
    features["key"] = f"{rng.choice(KEYS)} {features['scale']}"
    features["_mirdeck"] = {m: {"status": "ok", "version": "1", "profile": "cpu", "elapsed_s": 1.0} for m in MODULES}
    return features


def make(root: Path, tracks: int, seed: int = 1) -> Path:
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(tracks):
        folder = root / f"Artist {i % 300:03d} - Title {i:05d}"
        folder.mkdir()
        (folder / "full_mix.flac").touch()
        (folder / f"{folder.name}.INFO").write_text(json.dumps(info(rng)), encoding="utf-8")
    return root
