"""AudioBox Aesthetics throughput and memory: mirdeck's micro-batches against the package's path.

    python -m benchmarks.audiobox [--tracks 20] [--min-seconds 2] [--max-seconds 10] [--device cpu|cuda] [--bf16]

Builds a random-weight checkpoint of the real size (WavLM Base, 12 layers x 768 dim, ~95 M
parameters; timings do not depend on the weights' values) and synthesised stereo tracks at 16 kHz,
then scores the same tracks with:

    package     ``AesPredictor.forward`` once per file (its ``main_predict`` with batch_size=1):
                every window of a file in one batch
    mirdeck mbN the backend's scorer: the windows of all tracks as one stream, N windows per
                forward pass, PCM read window by window from .npy files like the engine's.
                (Inside the engine each request is one track, so a track with at least N windows,
                about N x 10 s, fills its micro-batches the same way.)

Tracks default to 2-10 s, one window each: on this 2-core machine a real-size window takes
several seconds on the CPU, and 20 tracks x 4 configurations must stay near 5 minutes.

Each configuration runs in a fresh process so its peak RSS is its own. The package's infer.py
imports torchaudio, which is not importable here; the child gives it a stand-in whose resample
refuses to change the rate (all audio is already 16 kHz, so no resampling is ever asked for).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = ("package", "mirdeck mb1", "mirdeck mb4", "mirdeck mb16")


def peak_rss() -> int:
    """This process's peak RSS in bytes (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    from backends.process_memory import peak_rss_bytes

    return peak_rss_bytes()


def settled_rss() -> int:
    """RSS now, after loading: the base that scoring adds to (loading's own transient peak, two
    copies of the weights, would otherwise hide what scoring costs)."""
    import gc

    gc.collect()
    # Reset the peak (VmHWM) to the current RSS so peak_rss() then tells what scoring reached.
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


def make_tracks(folder: Path, count: int, low: float, high: float) -> list[str]:
    """Stereo 16 kHz tracks of varied length (noise bursts over a chord); returns .npy paths."""
    import numpy as np

    from backends.audio import write_pcm

    rng = np.random.default_rng(1)
    lengths = np.linspace(low, high, count)
    paths = []
    for i, seconds in enumerate(lengths):
        n = int(seconds * 16000)
        t = np.arange(n) / 16000
        chord = sum(0.15 * np.sin(2 * np.pi * f * t) for f in (220 * 2 ** (i / 12), 277.2, 329.6))
        noise = 0.05 * rng.standard_normal(n) * (np.sin(2 * np.pi * 2 * t) > 0)
        left, right = chord + noise, chord - noise
        path = folder / f"track{i:02d}.npy"
        write_pcm(path, np.stack([left, right], axis=1).astype(np.float32))
        paths.append(str(path))
    return paths


def child(config: str, checkpoint: str, tracks: list[str], device: str, bf16: bool) -> dict:
    import numpy as np
    import torch

    from backends.extractors.audiobox import model as am

    if config == "package":
        import types

        sys.modules["torchaudio"] = types.SimpleNamespace(functional=types.SimpleNamespace(
            resample=lambda wav, orig_freq, new_freq: wav if orig_freq == new_freq else 1 / 0))
        from audiobox_aesthetics import infer

        predictor = infer.AesPredictor(checkpoint_pth=checkpoint, precision="32")
        predictor.model.to(device)
        predictor.device = torch.device(device)
        loaded = settled_rss()
        start = time.perf_counter()
        results = [predictor.forward([{"path": torch.from_numpy(np.load(p).T.copy()), "sample_rate": 16000}])[0]
                   for p in tracks]
    else:
        scorer = am.load_scorer(checkpoint, device)
        micro = int(config.split("mb")[1])
        items = [am.NpyFrames(p) for p in tracks]
        loaded = settled_rss()
        start = time.perf_counter()
        results = am.score(scorer, items, micro_batch=micro, bf16=bf16)
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    return {"wall": wall, "peak_rss": peak_rss(), "loaded_rss": loaded, "results": results,
            "gpu_peak": torch.cuda.max_memory_allocated() if device == "cuda" else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=20)
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--max-seconds", type=float, default=10.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for mirdeck's rows (GPU)")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", help=argparse.SUPPRESS)
    ap.add_argument("--track-files", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        print(json.dumps(child(args.child, args.checkpoint, args.track_files, args.device, args.bf16)))
        return 0

    import torch

    from backends.extractors.audiobox import model as am
    from tests.support.audiobox_standin import write_checkpoint

    with tempfile.TemporaryDirectory(prefix="mirdeck-bench-audiobox-") as tmp:
        tmp = Path(tmp)
        began = time.perf_counter()
        checkpoint = write_checkpoint(tmp / "checkpoint.pt", size="real")
        tracks = make_tracks(tmp, args.tracks, args.min_seconds, args.max_seconds)
        frames = [am.NpyFrames(p).frames for p in tracks]
        windows = sum(1 for _ in am.windows(frames))
        audio = sum(frames) / am.SAMPLE_RATE
        print(f"real-size random model ({checkpoint.stat().st_size / 1e6:.0f} MB checkpoint), "
              f"{args.tracks} tracks of {args.min_seconds:g}-{args.max_seconds:g} s ({audio:.0f} s audio, "
              f"{windows} windows), device {args.device}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, bf16={args.bf16} "
              f"(setup {time.perf_counter() - began:.0f} s)\n", flush=True)
        rows, reference = [], None
        for config in args.configs.split(","):
            out = subprocess.run([sys.executable, "-m", "benchmarks.audiobox", "--child", config,
                                  "--checkpoint", str(checkpoint), "--device", args.device,
                                  *(["--bf16"] if args.bf16 else []), "--track-files", *tracks],
                                 capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
                                 env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if out.returncode:
                print(f"{config}: failed\n{out.stderr[-2000:]}")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            if config == "package":
                reference = r["results"]
            diff = (max(abs(a[k] - b[k]) for a, b in zip(r["results"], reference) for k in am.AXES)
                    if reference else float("nan"))
            rows.append((config, r, diff))
            print(f"  {config}: {r['wall']:.1f} s", flush=True)
        print()
        head = (f"{'config':<22}{'windows/s':>10}{'x realtime':>12}{'peak RSS MB':>13}"
                f"{'scoring RSS MB':>16}{'GPU peak MB':>13}{'max |diff| vs package':>23}")
        print(head)
        print("-" * len(head))
        for config, r, diff in rows:
            gpu = f"{r['gpu_peak'] / 1e6:.0f}" if r["gpu_peak"] else "-"
            print(f"{config:<22}{windows / r['wall']:>10.2f}{audio / r['wall']:>12.2f}"
                  f"{r['peak_rss'] / 1e6:>13.0f}{(r['peak_rss'] - r['loaded_rss']) / 1e6:>16.0f}{gpu:>13}"
                  f"{diff:>23.2e}")
        print("\npeak RSS: the process's peak while scoring (weights included); scoring RSS: what scoring "
              "added over the RSS right after loading; x realtime: audio seconds per wall second.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
