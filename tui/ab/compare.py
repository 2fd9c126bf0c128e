"""How two descriptions of the same track compare: a text similarity and agreement on stated facts.

Similarity is ROUGE-L F1 over lower-cased words: the longest common subsequence of the two word
sequences, as precision/recall against each other. It is the usual measure for comparing a generated
description with another, it rewards the same words in the same order, it is symmetric in its F1
form, and it needs no model (the parent process never imports torch). Its blind spot is paraphrase
("upbeat" vs "energetic" scores 0), which is why the facts the prompts ask for are compared too:
tempo (BPM), key (pitch class and mode) and genre words, each only where both texts state them.
"""
from __future__ import annotations

import re
from typing import Any

TEMPO_TOLERANCE = 0.04
"""Relative BPM difference (4 %) within which two stated tempos agree."""

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_TEMPO = re.compile(r"(\d{2,3}(?:\.\d+)?)\s*(?:-\s*)?(?:bpm|beats per minute|b\.p\.m\.?)", re.IGNORECASE)
# The letter must be a capital: "a minor change" is not a key.
_KEY = re.compile(r"\b([A-G])(?:\s*(#|♯|b|♭|-sharp|-flat| sharp| flat))?\s*(major|minor|maj|min)\b")
_PITCH = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
GENRE_WORDS = (
    "acid jazz", "afrobeat", "ambient", "americana", "bebop", "bluegrass", "blues", "bossa nova", "breakbeat",
    "chillwave", "classical", "country", "dance", "darkwave", "disco", "downtempo", "drill", "drum and bass",
    "dub", "dubstep", "edm", "electro", "electronic", "electronica", "emo", "folk", "funk", "fusion", "garage",
    "gospel", "grime", "grunge", "hard rock", "hardcore", "heavy metal", "hip hop", "hip-hop", "house", "idm",
    "indie", "industrial", "jazz", "jungle", "k-pop", "latin", "lo-fi", "lofi", "metal", "minimal", "neo-soul",
    "new wave", "noise", "orchestral", "pop", "post-punk", "post-rock", "progressive", "psychedelic", "punk",
    "r&b", "rap", "reggae", "reggaeton", "rock", "salsa", "shoegaze", "ska", "soul", "soundtrack", "synth-pop",
    "synthpop", "synthwave", "techno", "trance", "trap", "trip hop", "trip-hop", "world",
)
_GENRE = re.compile(r"(?<![a-z])(" + "|".join(re.escape(g) for g in sorted(GENRE_WORDS, key=len, reverse=True))
                    + r")(?![a-z])")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def rouge_l_f1(a: str, b: str) -> float | None:
    """ROUGE-L F1 in [0, 1] between two texts; None when either has no words (nothing to compare)."""
    x, y = words(a or ""), words(b or "")
    if not x or not y:
        return None
    # LCS length by dynamic programming over one row (O(len(x) * len(y)) time, O(len(y)) memory).
    row = [0] * (len(y) + 1)
    for xi in x:
        prev_diag = 0
        for j, yj in enumerate(y, start=1):
            keep = row[j]
            row[j] = prev_diag + 1 if xi == yj else max(row[j], row[j - 1])
            prev_diag = keep
    lcs = row[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(x), lcs / len(y)
    return 2 * precision * recall / (precision + recall)


def tempo_of(text: str) -> float | None:
    """The first tempo stated in BPM, or None."""
    match = _TEMPO.search(text or "")
    return float(match.group(1)) if match else None


def key_of(text: str) -> str | None:
    """The first key stated, as ``<pitch> major|minor`` with flats for black keys (``Eb minor``), or None."""
    match = _KEY.search(text or "")
    if not match:
        return None
    letter, accidental, mode = match.groups()
    pitch = _PITCH[letter]
    accidental = (accidental or "").strip().lstrip("-")
    if accidental in ("#", "♯", "sharp"):
        pitch += 1
    elif accidental in ("b", "♭", "flat"):
        pitch -= 1
    return f"{_NAMES[pitch % 12]} {'minor' if mode.lower().startswith('min') else 'major'}"


def genres_of(text: str) -> set[str]:
    found = set(_GENRE.findall((text or "").lower()))
    # Spelling variants count as one genre.
    aliases = {"hip-hop": "hip hop", "trip-hop": "trip hop", "lofi": "lo-fi", "synthpop": "synth-pop"}
    return {aliases.get(g, g) for g in found}


def _tempo_agreement(a: float, b: float) -> str:
    def close(x, y):
        return abs(x - y) <= TEMPO_TOLERANCE * max(x, y)

    if close(a, b):
        return "agree"
    if close(a, 2 * b) or close(2 * a, b):
        return "half/double"
    return "differ"


def _key_agreement(a: str, b: str) -> str:
    if a == b:
        return "agree"
    pa, ma = _NAMES.index(a.split()[0]), a.split()[1]
    pb, mb = _NAMES.index(b.split()[0]), b.split()[1]
    if ma != mb:
        major, minor = (pa, pb) if ma == "major" else (pb, pa)
        if (major - 3) % 12 == minor:
            return "relative"
    return "differ"


def compare_facts(text_a: str, text_b: str) -> dict[str, Any]:
    """Tempo, key and genre words of each text and whether they agree (``n/a`` unless both state one)."""
    ta, tb = tempo_of(text_a), tempo_of(text_b)
    ka, kb = key_of(text_a), key_of(text_b)
    ga, gb = genres_of(text_a), genres_of(text_b)
    return {
        "tempo": {"a": ta, "b": tb, "agreement": _tempo_agreement(ta, tb) if ta and tb else "n/a"},
        "key": {"a": ka, "b": kb, "agreement": _key_agreement(ka, kb) if ka and kb else "n/a"},
        "genre": {"a": sorted(ga), "b": sorted(gb),
                  "jaccard": round(len(ga & gb) / len(ga | gb), 3) if ga and gb else None,
                  "shared": sorted(ga & gb)},
    }
