"""CPU seconds and realtime per core of the signal-processing modules on real music.

    python -m benchmarks.real_music [--tracks 3] [--seconds S] [--only timbral ...] [--baseline]

The material is a free game soundtrack from Debian (benchmarks/soundtrack.py: fetched with
``apt-get download`` into a cache outside the repository on first use, three full-length tracks
by default). Each track is decoded once, and resampled to the rates the modules ask for, as the
engine's decode step does; then each module runs in its real worker (``python -m
backends.worker``), one worker per module for all the tracks, as in a run, and this reads the
worker's CPU time for each request from ``/proc`` (start-up and library loading excluded: a
worker pays them once per run). ``--baseline`` also runs the eight ``timbral_models`` functions
on each file path, unaccelerated (only the compatibility layer), for the speed-up over the
package; it takes several times as long.

harmonic is left out: it reads stems, and this material has none. The synthetic figures come
from benchmarks/dsp.py and benchmarks/rhythm_timbral.py; docs/performance.md has both side by side.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import soundtrack
from benchmarks.dsp import run_requests

MODULES = ["audio_info", "loudness", "spectral", "multiband_rms", "chroma", "rhythm", "timbral"]


def decode(folder: Path, cache: Path) -> dict:
    """The track's mix decoded once, at its own rate and each rate a module asks for."""
    from backends.audio import decode_file, resample, write_pcm
    from backends.registry import all_specs

    path = folder / "full_mix.flac"
    data, rate = decode_file(path)
    native = cache / f"{folder.name}@native.npy"
    write_pcm(native, data)
    entries = {"native": str(native), str(rate): str(native)}
    rates = {need.sample_rate for spec in all_specs().values() for need in spec.audio
             if need.source == "mix" and need.sample_rate and spec.name in MODULES}
    for other in sorted(rates - {rate}):
        target = cache / f"{folder.name}@{other}.npy"
        write_pcm(target, resample(data, rate, other))
        entries[str(other)] = str(target)
    return {"mix": {"path": str(path), "sample_rate": rate, "channels": int(data.shape[1]),
                    "frames": int(data.shape[0]), "pcm": entries}}


def run_module(module: str, tracks: list[tuple[Path, dict]]) -> tuple[list[float], list[float], float]:
    """One worker of ``module`` for every track: (wall s per track, CPU s per track, peak MiB)."""
    return run_requests(module, tracks, "real")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=3, help="how many soundtrack tracks (default 3)")
    parser.add_argument("--seconds", type=float, help="use only the first S seconds of each track")
    parser.add_argument("--only", choices=MODULES, action="append", help="only these modules (repeatable)")
    parser.add_argument("--baseline", action="store_true",
                        help="also the unaccelerated timbral_models functions on the file path")
    args = parser.parse_args(argv)
    # Single-threaded workers, as the cpu profile runs them: CPU seconds are then one core's.
    os.environ.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    try:
        folders = soundtrack.fetch(args.tracks)
    except soundtrack.SetupError as exc:
        print(f"benchmark music: {exc}", file=sys.stderr)
        return 2
    modules = args.only or MODULES
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="mirdeck-real-") as tmp, \
            tempfile.TemporaryDirectory(prefix="mirdeck-real-pcm-", dir=shm) as cache:
        if args.seconds:
            folders = [_excerpt(folder, Path(tmp), args.seconds) for folder in folders]
        began = time.perf_counter()
        tracks = [(folder, decode(folder, Path(cache))) for folder in folders]
        decode_s = time.perf_counter() - began
        lengths = [s["mix"]["frames"] / s["mix"]["sample_rate"] for _, s in tracks]
        audio = sum(lengths)
        print(f"material: {soundtrack.PACKAGE} {soundtrack.package_version()}, {len(tracks)} tracks, "
              f"{audio:.0f} s ({', '.join(f'{x:.0f}' for x in lengths)} s), "
              f"{tracks[0][1]['mix']['sample_rate']} Hz stereo; decoded and resampled once in "
              f"{decode_s:.1f} s; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
        print(f"{'module':<44} {'wall s':>7} {'CPU s':>7} {'x rt/core':>9} {'peak MiB':>9}  per track x rt/core")
        print("-" * 110)
        total = 0.0
        results = {}
        for module in modules:
            walls, cpus, peak = run_module(module, tracks)
            results[module] = cpus
            total += sum(cpus)
            per_track = " ".join(f"{n / c:6.1f}" for n, c in zip(lengths, cpus))
            print(f"{module:<44} {sum(walls):>7.1f} {sum(cpus):>7.1f} {audio / sum(cpus):>9.1f} "
                  f"{peak:>9.0f}  {per_track}", flush=True)
        print(f"{'these modules, one after another':<44} {'':>7} {total:>7.1f} {audio / total:>9.1f}")
        if "timbral" in results:
            print(f"\ntimbral is {100 * sum(results['timbral']) / total:.0f} % of these modules' CPU")
        if args.baseline:
            from benchmarks.rhythm_timbral import run_worker

            cpu = 0.0
            for folder, sources in tracks:
                result = run_worker("timbral_baseline", {"id": "baseline", "sources": sources,
                                                         "track": {"folder": str(folder), "name": folder.name}})
                cpu += next(iter(result["cpu_seconds"].values()))
            print(f"timbral_models unaccelerated on the file paths: {cpu:.1f} CPU s, "
                  f"{audio / cpu:.1f}x realtime per core"
                  + (f"; mirdeck's timbral {cpu / sum(results['timbral']):.2f}x less CPU"
                     if "timbral" in results else ""))
    return 0


def _excerpt(folder: Path, tmp: Path, seconds: float) -> Path:
    """The first ``seconds`` of the track as a track folder of its own (a shorter benchmark)."""
    import soundfile

    data, rate = soundfile.read(folder / "full_mix.flac", dtype="int16", frames=int(seconds * rate_of(folder)))
    target = tmp / folder.name
    target.mkdir()
    soundfile.write(target / "full_mix.flac", data, rate, subtype="PCM_16")
    return target


def rate_of(folder: Path) -> int:
    import soundfile

    return soundfile.info(folder / "full_mix.flac").samplerate


if __name__ == "__main__":
    sys.exit(main())
