"""What the report and the dashboard's dataset screen show, gathered in one pass over the ``.INFO``
files: counts, coverage per module, value lists per numeric feature, label counts, outliers and
failures. UI-free; both views render the same ``DatasetStats``."""
from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from tui.export.features import TrackRecord, read_dataset
from tui.run.plan import applicable

DISTRIBUTIONS = {  # key: (title, unit)
    "duration_seconds": ("duration", "s"),
    "lufs": ("integrated loudness", "LUFS"),
    "lra": ("loudness range", "LU"),
    "bpm": ("tempo", "BPM"),
}
TIMBRAL = ("brightness", "roughness", "hardness", "depth", "booming", "reverberation", "sharpness", "warmth")
AESTHETICS = ("content_enjoyment", "content_usefulness", "production_complexity", "production_quality")
NUMERIC = tuple(DISTRIBUTIONS) + TIMBRAL + AESTHETICS

CLIPPING_RATIO = 1e-4  # more than 1 sample in 10,000 at full scale
SILENT_LUFS = -60.0

# Pitch classes as essentia names them, and the circle of fifths from C (relative minors beneath).
PITCH = {"C": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "F": 5, "F#": 6, "Gb": 6, "G": 7,
         "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11}
MAJOR_FIFTHS = ("C", "G", "D", "A", "E", "B", "F#", "Db", "Ab", "Eb", "Bb", "F")
MINOR_FIFTHS = ("A", "E", "B", "F#", "C#", "G#", "Eb", "Bb", "F", "C", "G", "D")


def key_name(key: str) -> str | None:
    """``Eb major``/``D# major`` both read ``Eb major``: the circle's own spelling."""
    tonic, _, scale = key.partition(" ")
    pc = PITCH.get(tonic)
    if pc is None or scale not in ("major", "minor"):
        return None
    names = MAJOR_FIFTHS if scale == "major" else MINOR_FIFTHS
    return next(f"{n} {scale}" for n in names if PITCH[n] == pc)


def circle_order() -> list[str]:
    return [f"{k} major" for k in MAJOR_FIFTHS] + [f"{k} minor" for k in MINOR_FIFTHS]


@dataclass
class Coverage:
    done: int = 0
    failed: int = 0
    not_applicable: int = 0
    not_run: int = 0


@dataclass
class TrackRow:
    name: str
    folder: Path
    audio: Path
    values: dict[str, float | str | None]
    failed: dict[str, str]


@dataclass
class DatasetStats:
    root: Path
    tracks: int = 0
    with_info: int = 0
    broken: list[str] = field(default_factory=list)
    coverage: dict[str, Coverage] = field(default_factory=dict)
    values: dict[str, array] = field(default_factory=lambda: {k: array("d") for k in NUMERIC})
    keys: Counter[str] = field(default_factory=Counter)
    labels: dict[str, Counter[str]] = field(default_factory=lambda: {h: Counter() for h in ("genre", "mood",
                                                                                             "instrument")})
    clipping: list[tuple[str, float]] = field(default_factory=list)
    silent: list[tuple[str, float]] = field(default_factory=list)
    tempo_undefined: list[str] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (track, module, error)
    rows: list[TrackRow] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    folders: dict[str, Path] = field(default_factory=dict)  # of the tracks named in outliers and failures
    keep_rows: bool = True  # False: each row goes to ``on_row`` only (the report streams its table)
    on_row: Callable[[TrackRow], None] | None = None

    def add(self, record: TrackRecord, specs=None) -> None:
        self.tracks += 1
        if record.problem:
            self.broken.append(record.problem)
        if record.features or record.provenance:
            self.with_info += 1
        for name, spec in (specs or {}).items():
            cov = self.coverage.setdefault(name, Coverage())
            status = record.module_status(name)
            # A stem provider is done where the track has every stem it writes, whoever wrote them
            # (supplied stems leave no provenance): the engine's own rule.
            if spec.provides and all(stem in record.track.stems for stem in spec.provides):
                status = "done"
            if status == "done":
                cov.done += 1
            elif status == "failed":
                cov.failed += 1
            elif not applicable(spec, record.track):
                cov.not_applicable += 1
            else:
                cov.not_run += 1
        values: dict[str, float | str | None] = {}
        for key in NUMERIC:
            v = record.bpm if key == "bpm" else record.number(key)
            values[key] = v
            if v is not None:
                self.values[key].append(v)
        name = key_name(record.key) if record.key else None
        if name:
            self.keys[name] += 1
        values["key"] = name
        for head, counter in self.labels.items():
            labels = record.labels(head)
            counter.update(labels)
            values[head] = labels[0] if labels else None
        clip = record.number("clipping_ratio")
        if clip is not None and clip > CLIPPING_RATIO:
            self.clipping.append((record.name, clip))
        lufs = record.number("lufs")
        if lufs is not None and lufs < SILENT_LUFS:
            self.silent.append((record.name, lufs))
        if record.tempo_undefined:
            self.tempo_undefined.append(record.name)
        errors = record.errors()
        for module, message in errors.items():
            self.failures.append((record.name, module, message))
        if errors or (self.clipping and self.clipping[-1][0] == record.name) or record.tempo_undefined or (
                self.silent and self.silent[-1][0] == record.name):
            self.folders[record.name] = record.folder
        row = TrackRow(record.name, record.folder, record.audio, values, errors)
        if self.on_row is not None:
            self.on_row(row)
        if self.keep_rows:
            self.rows.append(row)


def collect(records: Iterable[TrackRecord], root: Path, specs=None, *, keep_rows: bool = True,
            on_row: Callable[[TrackRow], None] | None = None) -> DatasetStats:
    stats = DatasetStats(root, keep_rows=keep_rows, on_row=on_row)
    for record in records:
        stats.add(record, specs)
    return stats


def dataset_stats(dataset: Path, specs=None, *, keep_rows: bool = True,
                  on_row: Callable[[TrackRow], None] | None = None) -> DatasetStats:
    """Read every ``.INFO`` of ``dataset`` once; ``specs`` (the registry's, by default) name the modules."""
    if specs is None:
        from backends.registry import all_specs

        specs = {n: s for n, s in all_specs().items() if not n.startswith("_")}
    records, problems = read_dataset(dataset)
    stats = collect(records, Path(dataset), specs, keep_rows=keep_rows, on_row=on_row)
    stats.problems = list(problems)
    return stats
