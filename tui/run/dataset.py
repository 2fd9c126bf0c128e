"""Finding the tracks of a dataset: one folder per track with a ``full_mix`` and optional stems."""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

# Preference order when a folder holds the same role in several formats: lossless first.
AUDIO_SUFFIXES = (".flac", ".wav", ".aiff", ".aif", ".ogg", ".mp3", ".m4a")
STEM_NAMES = ("drums", "bass", "other", "vocals")
ROLES = ("full_mix",) + STEM_NAMES


@dataclass
class TrackFolder:
    folder: Path
    mix: Path
    stems: dict[str, Path] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def info_path(self) -> Path:
        return self.folder / f"{self.folder.name}.INFO"

    def files(self) -> dict[str, Path]:
        """Every audio file of the track by source name (``mix`` or a stem)."""
        return {"mix": self.mix, **self.stems}


@dataclass
class ScanResult:
    root: Path
    tracks: list[TrackFolder]
    problems: list[str]


def _pick(folder: Path, role: str, candidates: list[str], problems: list[str]) -> Path:
    ranked = sorted(candidates, key=lambda n: (AUDIO_SUFFIXES.index(os.path.splitext(n)[1].lower()), n))
    if len(ranked) > 1:
        problems.append(f"{folder}: several {role} files ({', '.join(ranked)}); using {ranked[0]}")
    return folder / ranked[0]


def scan_folder(folder: Path, problems: list[str]) -> TrackFolder | None:
    """The track in one folder, or None (with the reason in ``problems``) if it has no mix."""
    by_role: dict[str, list[str]] = {}
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                stem, suffix = os.path.splitext(entry.name)
                role = stem.lower()
                if suffix.lower() in AUDIO_SUFFIXES and role in ROLES and entry.is_file():
                    by_role.setdefault(role, []).append(entry.name)
    except OSError as exc:
        problems.append(f"{folder}: cannot list folder ({exc.strerror})")
        return None
    if "full_mix" not in by_role:
        if by_role:
            problems.append(f"{folder}: stems but no full_mix.<{'|'.join(s[1:] for s in AUDIO_SUFFIXES)}>; skipped")
        else:
            problems.append(f"{folder}: no full_mix audio file; skipped")
        return None
    mix = _pick(folder, "full_mix", by_role.pop("full_mix"), problems)
    stems = {role: _pick(folder, role, names, problems) for role, names in sorted(by_role.items())}
    return TrackFolder(folder=folder, mix=mix, stems=stems)


def scan(root: str | os.PathLike[str]) -> ScanResult:
    """Every track folder directly under ``root`` (or ``root`` itself if it is a track), sorted.

    Hidden folders (``.mirdeck`` run logs among them) are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder does not exist")
    problems: list[str] = []
    single = scan_folder(root, [])
    if single is not None:
        return ScanResult(root, [single], [])
    tracks = []
    with os.scandir(root) as entries:
        folders = sorted(e.path for e in entries if not e.name.startswith(".") and e.is_dir())
    for path in folders:
        track = scan_folder(Path(path), problems)
        if track is not None:
            tracks.append(track)
    return ScanResult(root, tracks, problems)


@dataclass
class OrganizeAction:
    source: Path
    target: Path
    done: bool
    reason: str = ""


def organize(source: str | os.PathLike[str], dest: str | os.PathLike[str], *, move: bool = False,
             dry_run: bool = False) -> list[OrganizeAction]:
    """Turn loose audio files into track folders: ``a/Artist - Title.mp3`` becomes
    ``dest/Artist - Title/full_mix.mp3``. Copies unless ``move``; never overwrites anything."""
    source, dest = Path(source), Path(dest)
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: not a folder")
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(source).parts))
    actions: list[OrganizeAction] = []
    claimed: dict[Path, Path] = {}
    for path in files:
        folder = dest / path.stem
        target = folder / f"full_mix{path.suffix.lower()}"
        if folder in claimed:
            actions.append(OrganizeAction(path, target, False,
                                          f"another file ({claimed[folder].name}) already goes to {folder}"))
            continue
        existing = [p for p in folder.glob("full_mix.*")] if folder.is_dir() else []
        if existing:
            actions.append(OrganizeAction(path, target, False, f"{existing[0]} already exists"))
            continue
        claimed[folder] = path
        if not dry_run:
            folder.mkdir(parents=True, exist_ok=True)
            # Create the target exclusively so a concurrent organize cannot be overwritten either.
            with open(target, "xb"):
                pass
            if move:
                os.replace(path, target) if _same_device(path, folder) else shutil.move(path, target)
            else:
                shutil.copyfile(path, target)
        actions.append(OrganizeAction(path, target, True))
    return actions


def _same_device(a: Path, b: Path) -> bool:
    return a.stat().st_dev == b.stat().st_dev
