"""Where the timbral module's time and memory go: each of the eight ``timbral_models`` functions
alone, in its own process, on the same synthesised track.

    python -m benchmarks.timbral_profile [--seconds 120] [--mode package|mirdeck]... [--only NAME]...
    python -m benchmarks.timbral_profile --module [--seconds 450]
    python -m benchmarks.timbral_profile --music [--seconds S] [--module [--cprofile N]]

``--music`` profiles a real track instead of the synthesised one: the first track of the
benchmark soundtrack (benchmarks/soundtrack.py, fetched on first use), whole or its first S s.

``package`` calls the unmodified package function (only the compatibility layer applied) on the
decoded array; ``mirdeck`` calls it with mirdeck's accelerations installed. Each row is a fresh
process, so its peak RSS is that function's own (minus nothing: the interpreter, NumPy, librosa
and the decoded track are in every row; the "base" column is the RSS just before the call).
A sampling thread notes the main thread's stack whenever RSS reaches a new high, so the table
also says where each peak happened.

``--module`` runs the backend's own ``process`` instead (the mix decoded once to the shared PCM,
as the engine does), all eight functions in one worker, and gives the peak RSS during each
function and where it happened: the functions share the worker's arrays and caches, so the
module's peak is not any single row of the table.

CPU seconds are per process (one core; BLAS threads pinned to one); on a shared machine they are
what it would take on an idle core, while wall seconds also measure the neighbours.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

NAMES = ("brightness", "roughness", "hardness", "depth", "booming", "sharpness", "warmth",
         "reverb")
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakWatcher(threading.Thread):
    """Samples RSS every few ms; remembers the main thread's innermost package frames at the peak."""

    def __init__(self, main_ident: int, interval_s: float = 0.005):
        super().__init__(daemon=True)
        self.main_ident, self.interval_s = main_ident, interval_s
        self.peak_mb, self.where = 0.0, ""
        self.stage = ""
        self.stages: dict[str, tuple[float, str]] = {}  # stage -> its peak and where
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            rss, stage = _rss_mb(), self.stage
            if rss > self.stages.get(stage, (0.0, ""))[0]:
                where = self._stack()
                self.stages[stage] = (rss, where)
                if rss > self.peak_mb:
                    self.peak_mb, self.where = rss, where
            time.sleep(self.interval_s)

    def _stack(self) -> str:
        frame = sys._current_frames().get(self.main_ident)
        stack = []
        while frame is not None:
            code = frame.f_code
            if "site-packages" in code.co_filename or "backends" in code.co_filename:
                stack.append(f"{Path(code.co_filename).stem}.{code.co_name}:{frame.f_lineno}")
            frame = frame.f_back
        return " < ".join(stack[:4])

    def stop(self):
        self._halt.set()
        self.join()


def measure(name: str, mode: str, path: str) -> dict:
    import soundfile

    from backends.extractors.timbral import compat as timbral_compat

    package = timbral_compat.load()
    if mode == "mirdeck":
        from backends.extractors.timbral import speedups as timbral_speedups

        timbral_speedups.install(package)
    # The package's own read (soundfile, float64, always_2d=False), once, outside the measurement.
    audio, rate = soundfile.read(path, always_2d=False)
    function = getattr(package, f"timbral_{name}")
    kwargs = {"dev_output": True} if name == "reverb" else {}
    # Warm-up on one second of noise: numba compiles and library caches are per-worker costs.
    warm = np.random.default_rng(0).standard_normal((rate, 2)) * 0.1
    function(warm, fs=rate, **kwargs)
    base = _rss_mb()
    watcher = PeakWatcher(threading.get_ident())
    watcher.start()
    context = timbral_speedups.track_cache() if mode == "mirdeck" else _nothing()
    began, began_cpu = time.perf_counter(), time.process_time()
    with context:
        value = function(audio.copy(), fs=rate, **kwargs)
    cpu, wall = time.process_time() - began_cpu, time.perf_counter() - began
    watcher.stop()
    if name == "reverb":
        value = value[1] * 100
    return {"name": name, "mode": mode, "value": float(value), "cpu_s": cpu, "wall_s": wall,
            "base_mb": base, "peak_mb": max(watcher.peak_mb, _own_peak_mb()), "where": watcher.where}


def _own_peak_mb() -> float:
    from backends.process_memory import peak_rss_bytes

    return peak_rss_bytes() / 2 ** 20  # not rusage's, which holds this benchmark's own peak


def measure_module(request: dict) -> dict:
    """The backend's ``process`` on the decoded track, with the peak RSS during each function."""
    from backends.extractors import timbral
    from backends.track import Track

    extractor = timbral.create()
    watcher = PeakWatcher(threading.get_ident(), interval_s=0.002)

    def progress(fraction, stage):
        watcher.stage = stage

    track = Track.from_request(request, send_progress=progress)
    watcher.stage = "(decoded track)"
    base = _rss_mb()
    watcher.start()
    top = int(os.environ.get("MIRDECK_TIMBRAL_CPROFILE", "0"))
    profiler = None
    if top:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    began, began_cpu = time.perf_counter(), time.process_time()
    features = extractor.process(track).features
    cpu, wall = time.process_time() - began_cpu, time.perf_counter() - began
    watcher.stop()
    result = {"cpu_s": cpu, "wall_s": wall, "base_mb": base, "peak_mb": _own_peak_mb(),
              "stages": watcher.stages, "features": features}
    if profiler is not None:
        import io
        import pstats

        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
        result["profile"] = text.getvalue()
    return result


def material(folder: Path, seconds: float | None, music: bool) -> tuple[Path, float, str]:
    """(track folder, its length in seconds, what it is): synthesised or the soundtrack's."""
    import soundfile

    from benchmarks.rhythm_timbral import synthesise

    if not music:
        seconds = seconds or 120.0
        return synthesise(folder, seconds), seconds, "synthesised 44.1 kHz stereo"
    from benchmarks import soundtrack
    from benchmarks.real_music import _excerpt

    track = soundtrack.fetch(1)[0]
    if seconds:
        track = _excerpt(track, folder, seconds)
    info = soundfile.info(track / "full_mix.flac")
    return track, info.duration, f"{track.name} ({soundtrack.PACKAGE}), {info.samplerate} Hz stereo"


def module_main(seconds: float | None, music: bool = False, cprofile: int = 0) -> int:
    from benchmarks.rhythm_timbral import decode_once

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, **SINGLE_THREADED, "PYTHONPATH": str(root),
           "MIRDECK_TIMBRAL_CPROFILE": str(cprofile)}
    with tempfile.TemporaryDirectory(prefix="mirdeck-timbral-") as tmp:
        (Path(tmp) / "dataset").mkdir()
        track, seconds, what = material(Path(tmp) / "dataset", seconds, music)
        (Path(tmp) / "pcm").mkdir()
        request = {"id": "profile", "track": {"folder": str(track), "name": track.name},
                   "sources": {"mix": decode_once(track, Path(tmp) / "pcm")["mix"]}}
        proc = subprocess.run([sys.executable, "-m", "benchmarks.timbral_profile", "--module-worker"],
                              input=json.dumps(request), capture_output=True, text=True, env=env,
                              cwd=root)
    if proc.returncode != 0:
        raise RuntimeError(f"the module failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"\n{seconds:.0f} s, {what}; load average {os.getloadavg()[0]:.1f}; the whole "
          f"module in one worker: {result['cpu_s']:.1f} CPU s, {result['wall_s']:.1f} s; "
          f"RSS before the track {result['base_mb']:.0f} MB, peak (VmHWM) {result['peak_mb']:.0f} MB\n")
    print(f"{'stage':15s} {'peak MB':>8s}  where")
    for stage, (peak, where) in result["stages"].items():
        print(f"{stage:15s} {peak:8.0f}  {where}")
    print("\n" + json.dumps(result["features"]))
    if result.get("profile"):
        print("\ncProfile of the module's process (its own overhead inflates the times), by own time:")
        print(result["profile"])
    return 0


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def run_one(name: str, mode: str, path: Path) -> dict:
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, **SINGLE_THREADED, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.timbral_profile", "--worker", name,
                           mode, str(path)], capture_output=True, text=True, env=env, cwd=root)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} ({mode}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, help="track length (synthetic: default 120)")
    parser.add_argument("--music", action="store_true", help="a real soundtrack track, not a synthetic one")
    parser.add_argument("--mode", choices=("package", "mirdeck"), action="append")
    parser.add_argument("--only", choices=NAMES, action="append")
    parser.add_argument("--module", action="store_true",
                        help="the backend's process, all eight functions in one worker")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N",
                        help="with --module: also the N functions with the most own time (cProfile)")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--module-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.module_worker:
        sys.stdout.write(json.dumps(measure_module(json.loads(sys.stdin.read())), default=float) + "\n")
        return 0
    if args.module:
        return module_main(args.seconds, args.music, args.cprofile)
    if args.worker:
        name, mode, path = args.worker
        sys.stdout.write(json.dumps(measure(name, mode, path)) + "\n")
        return 0

    modes = args.mode or ["package", "mirdeck"]
    with tempfile.TemporaryDirectory(prefix="mirdeck-timbral-") as tmp:
        track, seconds, what = material(Path(tmp), args.seconds, args.music)
        path = track / "full_mix.flac"
        rows = []
        for name in args.only or NAMES:
            for mode in modes:
                row = run_one(name, mode, path)
                rows.append(row)
                print(f"{name:11s} {mode:8s} {row['cpu_s']:7.2f} CPU s {row['wall_s']:7.2f} s "
                      f"base {row['base_mb']:6.0f} MB peak {row['peak_mb']:6.0f} MB  "
                      f"value {row['value']:.9g}  at {row['where']}", flush=True)
    print(f"\n{seconds:.0f} s, {what}; load average {os.getloadavg()[0]:.1f}; "
          f"CPU s per process (one core)\n")
    print(f"{'function':11s} {'mode':8s} {'CPU s':>7s} {'x rt CPU':>8s} {'peak MB':>8s} "
          f"{'above base':>10s}  value")
    for row in rows:
        print(f"{row['name']:11s} {row['mode']:8s} {row['cpu_s']:7.2f} "
              f"{seconds / row['cpu_s']:8.1f} {row['peak_mb']:8.0f} "
              f"{row['peak_mb'] - row['base_mb']:10.0f}  {row['value']:.12g}")
    for mode in modes:
        total = sum(r["cpu_s"] for r in rows if r["mode"] == mode)
        print(f"sum of {mode}: {total:.1f} CPU s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
