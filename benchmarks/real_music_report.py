"""The report, the exports and the dataset screen on real music: the free soundtrack of the
Debian package ``asc-music`` (3 tracks, MP3), fetched with ``apt-get download`` (nothing is
installed, no audio is committed), organised into track folders, analysed by the real engine
with the modules that need no model weights, then reported, exported and screenshotted.

    python -m benchmarks.real_music_report [--work /tmp/mirdeck-real] [--modules audio_info,...]

Prints the time of each step; the page is at WORK/dataset/.mirdeck/report.html and its
screenshot at WORK/report.png (headless Chromium, when installed).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

PACKAGE = "asc-music"
MODULES = "audio_info,loudness,rhythm,chroma,spectral,multiband_rms,harmonic"


def step(name: str, command: list[str], **kw) -> None:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, **kw)
    print(f"{name:<28} {time.perf_counter() - start:7.1f} s   exit {done.returncode}")
    if done.returncode not in (0, 1):
        sys.exit(done.stderr[-3000:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path("/tmp/mirdeck-real"))
    parser.add_argument("--modules", default=MODULES)
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    mirdeck = [sys.executable, "-m", "tui.cli"]
    if not list(work.glob(f"{PACKAGE}_*.deb")):
        step("apt-get download", ["apt-get", "download", PACKAGE], cwd=work)
    deb = next(work.glob(f"{PACKAGE}_*.deb"))
    step("dpkg -x", ["dpkg", "-x", str(deb), str(work / "pkg")])
    dataset = work / "dataset"
    if not dataset.exists():
        step("mirdeck organize", mirdeck + ["organize", str(work / "pkg" / "usr/share/games/asc/music"), str(dataset)])
    step("mirdeck run", mirdeck + ["run", str(dataset), "--headless", "--only", args.modules])
    step("mirdeck report", mirdeck + ["report", str(dataset)])
    for fmt in ("jsonl", "parquet", "audiocraft", "stable-audio", "acestep"):
        step(f"mirdeck export --to {fmt}", mirdeck + ["export", str(dataset), "--to", fmt])
    chromium = shutil.which("chromium")
    if chromium:
        step("chromium screenshot", [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                     "--force-device-scale-factor=1", "--window-size=1300,2200",
                                     f"--screenshot={work / 'report.png'}",
                                     (dataset / ".mirdeck" / "report.html").as_uri()])
    print(f"report: {dataset / '.mirdeck' / 'report.html'}")


if __name__ == "__main__":
    main()
