"""Reading a dataset's ``.INFO`` files for exports and the report: one ``TrackRecord`` per track.

The store's own reader (``tui.run.store.read_info_lenient``) reads each file, so a broken
``.INFO`` is reported, never guessed at. Derived values (the top genre, the key as one word
pair, artist and title from the folder name) are computed here once, so every format and the
report say the same thing. A value that is not there stays ``None``: nothing is filled in.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from tui.run.dataset import TrackFolder, scan
from tui.run.store import PROVENANCE_KEY, read_info_lenient

LABEL_KEYS = {"genre": "essentia_genre", "mood": "essentia_mood", "instrument": "essentia_instrument"}


def clean_label(label: str) -> str:
    """A classifier label as words: Discogs' ``Electronic---Deep House`` reads ``Deep House``,
    MTG-Jamendo's ``mood/theme---dark`` reads ``dark``."""
    return label.rsplit("---", 1)[-1].strip()


@dataclass
class TrackRecord:
    track: TrackFolder
    features: dict[str, Any]
    provenance: dict[str, Any]
    problem: str = ""  # the .INFO could not be read (the reason), or ""

    @property
    def name(self) -> str:
        return self.track.name

    @property
    def folder(self) -> Path:
        return self.track.folder

    @property
    def audio(self) -> Path:
        return self.track.mix

    def number(self, key: str) -> float | None:
        value = self.features.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return float(value)

    def labels(self, head: str) -> list[str]:
        """Labels of one essentia_tf head (``genre``, ``mood``, ``instrument``), most probable first."""
        value = self.features.get(LABEL_KEYS[head])
        if not isinstance(value, dict):
            return []
        ranked = sorted(value.items(), key=lambda kv: -kv[1] if isinstance(kv[1], (int, float)) else 0.0)
        seen: list[str] = []
        for label, _ in ranked:
            word = clean_label(str(label))
            if word and word not in seen:
                seen.append(word)
        return seen

    @property
    def bpm(self) -> float | None:
        """The tempo, or None where the rhythm module found none (``bpm_is_defined`` 0 or false)."""
        flag = self.features.get("bpm_is_defined")
        if flag is not None and not flag:
            return None
        return self.number("bpm")

    @property
    def tempo_undefined(self) -> bool:
        """The rhythm module ran and found no tempo (too short, no beats)."""
        return self.module_status("rhythm") == "done" and self.bpm is None

    @property
    def key(self) -> str | None:
        """``A minor``: the chroma module's key (which names its scale already), or None."""
        key, scale = self.features.get("key"), self.features.get("scale")
        if not isinstance(key, str) or not key.strip():
            return None
        key = key.strip()
        if " " not in key and isinstance(scale, str) and scale:
            key = f"{key} {scale}"
        return key

    @property
    def artist_title(self) -> tuple[str | None, str]:
        """``Artist - Title`` folder names split in two; any other name is a title alone."""
        artist, sep, title = self.name.partition(" - ")
        if sep and artist.strip() and title.strip():
            return artist.strip(), title.strip()
        return None, self.name

    def module_status(self, module: str) -> str:
        """``done``, ``failed`` or ``""`` (not run) from the module's provenance."""
        prov = self.provenance.get(module)
        if not isinstance(prov, dict):
            return ""
        return "done" if prov.get("status") == "ok" else "failed"

    def errors(self) -> dict[str, str]:
        """Each module's last error message (also when an earlier good result was kept)."""
        found = {}
        for module, prov in self.provenance.items():
            if not isinstance(prov, dict):
                continue
            error = prov.get("error") or (prov.get("last_error") or {}).get("error")
            if isinstance(error, dict):
                found[module] = f"{error.get('kind', 'error')}: {error.get('message', '')}"
        return found


def read_track(track: TrackFolder) -> TrackRecord:
    info, problem = read_info_lenient(track.info_path)
    provenance = info.get(PROVENANCE_KEY)
    features = {k: v for k, v in info.items() if not k.startswith("_")}
    return TrackRecord(track, features, provenance if isinstance(provenance, dict) else {}, problem)


def read_dataset(dataset: Path) -> tuple[Iterator[TrackRecord], list[str]]:
    """The dataset's tracks as records, read one at a time (flat memory), and the scan's problems."""
    result = scan(dataset)
    return (read_track(t) for t in result.tracks), result.problems


class DatasetReader:
    """Reads a dataset again and again (the dashboard during a run), re-reading only the ``.INFO``
    files whose modification time or size changed since the previous call."""

    def __init__(self, dataset: Path):
        self.dataset = Path(dataset)
        self._cache: dict[Path, tuple[tuple[int, int], TrackRecord]] = {}
        self.reread = 0  # files read by the last call (the rest came from the cache)

    def records(self) -> tuple[list[TrackRecord], list[str]]:
        result = scan(self.dataset)
        records, seen = [], set()
        self.reread = 0
        for track in result.tracks:
            path = track.info_path
            seen.add(path)
            try:
                st = os.stat(path)
                signature = (st.st_mtime_ns, st.st_size)
            except OSError:
                signature = None
            hit = self._cache.get(path)
            if signature is not None and hit is not None and hit[0] == signature:
                record = hit[1]
                record.track = track
            else:
                record = read_track(track)
                self.reread += 1
                if signature is not None:
                    self._cache[path] = (signature, record)
            records.append(record)
        for path in set(self._cache) - seen:
            del self._cache[path]
        return records, result.problems
