"""Real music for the benchmarks: a free game soundtrack from Debian, fetched once into a cache.

    python -m benchmarks.soundtrack [--tracks 3]     # fetch, convert, print the dataset folder

Synthesised signals mislead (timbral ran 2x realtime per core on the synthetic benchmark track
and 8x on commercially produced music), so the benchmarks also run on real, produced music.
Debian's ``warzone2100-music`` (the Warzone 2100 soundtrack, GPL-2+, 86 MB, 30 Opus tracks of
3-14 minutes: electronic, orchestral and ambient game music, 48 kHz stereo) is downloaded with
``apt-get download`` (no root install: ``dpkg-deb -x`` unpacks it into the cache) and the chosen
tracks are decoded once with ffmpeg to 16-bit FLAC, each in a track folder as mirdeck reads
them (``<Album - Track>/full_mix.flac``), so the same folder works with ``mirdeck run``.
nexuiz-music is left alone: it is kept for independent checks. No audio is ever committed.

The cache is ``$MIRDECK_BENCH_MUSIC`` or ``~/.cache/mirdeck/benchmark-music`` (outside the
repository). ``apt-get download`` needs the package lists (``apt-get update`` once).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = "warzone2100-music"
MUSIC_DIR = Path("usr/share/games/warzone2100/music/albums")
# A fixed choice, so figures can be compared across runs: three full-length tracks of three
# albums and styles (7.0, 5.2 and 6.0 minutes), then more in package order for --tracks > 3.
CHOSEN = ("original_soundtrack/track1.opus", "legacy_soundtrack/track6.opus",
          "aftermath_soundtrack/track19.opus")


class SetupError(RuntimeError):
    pass


def cache_dir() -> Path:
    env = os.environ.get("MIRDECK_BENCH_MUSIC")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mirdeck" / "benchmark-music"


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise SetupError(f"{cmd[0]} is not installed: {exc}") from exc
    if proc.returncode != 0:
        raise SetupError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return proc.stdout


def _extracted(cache: Path) -> Path:
    """The unpacked package (downloaded and unpacked on first use)."""
    root = cache / "package"
    if (root / MUSIC_DIR).is_dir():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    debs = sorted(cache.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        try:
            _run(["apt-get", "download", PACKAGE], cwd=cache)
        except SetupError as exc:
            raise SetupError(f"could not download the benchmark music ({PACKAGE}): {exc}\n"
                             f"(apt-get download needs the package lists: run apt-get update)") from exc
        debs = sorted(cache.glob(f"{PACKAGE}_*.deb"))
    tmp = cache / "package.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    _run(["dpkg-deb", "-x", str(debs[-1]), str(tmp)])
    tmp.rename(root)
    return root


def package_version(cache: Path | None = None) -> str:
    debs = sorted((cache or cache_dir()).glob(f"{PACKAGE}_*.deb"))
    return debs[-1].name.split("_")[1] if debs else "?"


def _track_name(relative: str) -> str:
    album, name = relative.split("/")
    return f"Warzone 2100 {album.replace('_', ' ').title()} - {Path(name).stem}"


def fetch(tracks: int = 3) -> list[Path]:
    """Track folders of ``tracks`` real tracks (each with a ``full_mix.flac``), made on first use."""
    cache = cache_dir()
    root = _extracted(cache)
    every = sorted(str(p.relative_to(root / MUSIC_DIR)) for p in (root / MUSIC_DIR).glob("*/*.opus"))
    order = list(CHOSEN) + [name for name in every if name not in CHOSEN]
    if tracks > len(order):
        raise SetupError(f"{PACKAGE} has {len(order)} tracks, {tracks} asked for")
    dataset = cache / "dataset"
    folders = []
    for relative in order[:tracks]:
        folder = dataset / _track_name(relative)
        flac = folder / "full_mix.flac"
        if not flac.exists():
            folder.mkdir(parents=True, exist_ok=True)
            partial = folder / "full_mix.partial.flac"
            _run(["ffmpeg", "-v", "error", "-y", "-i", str(root / MUSIC_DIR / relative),
                  "-c:a", "flac", "-sample_fmt", "s16", str(partial)])
            partial.rename(flac)
        folders.append(folder)
    return folders


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        folders = fetch(args.tracks)
    except SetupError as exc:
        print(f"benchmark music: {exc}", file=sys.stderr)
        return 2
    print(f"{PACKAGE} {package_version()}: {len(folders)} tracks in {folders[0].parent}")
    for folder in folders:
        print(f"  {folder.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
