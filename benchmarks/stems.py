"""Stem separation cost: the full-size htdemucs network (random weights: speed does not depend on
their values) on real music, and what the per-stem modules then add.

    python -m benchmarks.stems [--seconds 45] [--device cpu|cuda] [--threads 1,2] [--batch 1,2]

Real music: the soundtrack of Debian's ``asc-music`` package (GPL-2+; installed by this script when
missing and run as root), ``time_to_strike.mp3``, its first ``--seconds``. Each configuration runs in a
child process of its own, so its peak memory (RSS; on a GPU, torch's peak allocation) is its own.
Prints one table of separation runs and one of the per-stem modules' cost through the real engine
(the same track with no stems, then with the four stems just separated).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE, TRACK = "asc-music", Path("/usr/share/games/asc/music/time_to_strike.mp3")
# htdemucs as released (demucs/grids/mmi.py: 5 transformer layers at 512 bottom channels, DConv mode 3,
# a 7.8 s training segment; 41.98 M parameters, the 84 MB half-precision checkpoint).
FULL = dict(channels=48, depth=4, t_layers=5, t_heads=8, dconv_comp=8, bottom_channels=512, dconv_mode=3)


def ensure_music() -> Path:
    if not TRACK.is_file():
        if os.geteuid() != 0:
            raise SystemExit(f"needs {TRACK}: apt-get install {PACKAGE}")
        subprocess.run(["apt-get", "install", "-y", "-qq", PACKAGE], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}, stdout=subprocess.DEVNULL)
    return TRACK


def child(args: dict) -> dict:
    """One separation in this process: load the checkpoint as the module does, separate, report."""
    import resource
    import time

    import numpy as np
    import torch

    torch.set_num_threads(args["threads"])
    from backends.audio import decode_file, resample
    from backends.extractors.stems import checkpoint, separate

    data, rate = decode_file(args["mix"])
    data = resample(data, rate, 44100)
    loaded = checkpoint.load("htdemucs", Path(args["repo"]), args["device"])
    wav = torch.from_numpy(np.ascontiguousarray(data.T))
    ref = wav.mean(0)
    normalised = (wav - ref.mean()) / (ref.std() + 1e-8)
    if args["device"] != "cpu":
        torch.cuda.reset_peak_memory_stats()
    began, cpu_began = time.perf_counter(), time.process_time()
    out = separate.separate(loaded.model, normalised, segment=7.8, overlap=0.25, shifts=1,
                            batch=args["batch"], device=args["device"], seed=0)
    if args["device"] != "cpu":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu_began
    if args["write"]:
        import soundfile

        for index, stem in enumerate(loaded.model.sources):
            pcm = out[index].numpy().T * float(ref.std() + 1e-8) + float(ref.mean())
            soundfile.write(Path(args["write"]) / f"{stem}.flac", np.clip(pcm, -1, 1), 44100, subtype="PCM_24")
    return {"wall_s": wall, "cpu_s": cpu, "audio_s": data.shape[0] / 44100, "parameters": loaded.parameters,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_vram_mb": (torch.cuda.max_memory_allocated() / 2**20) if args["device"] != "cpu" else None}


def run_child(args: dict) -> dict:
    done = subprocess.run([sys.executable, "-m", "benchmarks.stems", "--child", json.dumps(args)],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def engine_cost(mix: Path, stems_dir: Path, work: Path) -> dict[str, dict[str, float]]:
    """Wall seconds of loudness, rhythm and harmonic on the track without stems and with four."""
    sys.path.insert(0, str(ROOT))
    from tests.support.helpers import run_engine

    costs: dict[str, dict[str, float]] = {}
    for label, with_stems in (("no stems", False), ("four stems", True)):
        folder = work / label / "track"
        folder.mkdir(parents=True)
        shutil.copyfile(mix, folder / f"full_mix{mix.suffix}")
        if with_stems:
            for path in stems_dir.glob("*.flac"):
                shutil.copyfile(path, folder / path.name)
        _, stats = run_engine(work / label, only=["loudness", "rhythm", "harmonic"], jobs=1)
        costs[label] = {name: s.wall_seconds for name, s in stats.items()}
    return costs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=45.0, help="length of the excerpt")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--batch", default="1,2", help="segments per pass (the last thread count only)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    sys.path.insert(0, str(ROOT))
    import soundfile

    from backends.audio import decode_file
    from tests.support import demucs_standin

    track = ensure_music()
    with tempfile.TemporaryDirectory(prefix="mirdeck-bench-stems-") as tmp:
        work = Path(tmp)
        data, rate = decode_file(track)
        excerpt = work / "excerpt.flac"
        soundfile.write(excerpt, data[: int(args.seconds * rate)], rate)
        demucs_standin.save(demucs_standin.build(**demucs_standin.SMALL | FULL), work / "repo", "955717e8")
        rows = []
        threads = [int(t) for t in args.threads.split(",")]
        batches = [int(b) for b in args.batch.split(",")]
        configs = [(t, batches[0]) for t in threads] + [(threads[-1], b) for b in batches[1:]]
        stems_dir = work / "stems"
        stems_dir.mkdir()
        for i, (n_threads, batch) in enumerate(configs):
            result = run_child({"mix": str(excerpt), "repo": str(work / "repo"), "device": args.device,
                                "threads": n_threads, "batch": batch, "write": str(stems_dir) if i == 0 else ""})
            rows.append((n_threads, batch, result))
        print(f"htdemucs, full size ({rows[0][2]['parameters']:,} parameters, random weights), {args.device}; "
              f"{track.name} ({PACKAGE}), first {args.seconds:g} s ({rate} Hz, resampled to 44.1 kHz); "
              "segment 7.8 s, overlap 0.25, shifts 1")
        # On a shared machine wall time says how busy the others were; CPU time says what
        # separation costs: "x rt per CPU s" is audio seconds per CPU second, i.e. per busy core.
        print(f"{'threads':>7} {'batch':>5} {'wall s':>8} {'CPU s':>8} {'x realtime':>10} {'x rt per CPU s':>14} "
              f"{'peak RSS MB':>11} {'peak VRAM MB':>12}")
        for n_threads, batch, r in rows:
            vram = f"{r['peak_vram_mb']:.0f}" if r["peak_vram_mb"] else "-"
            print(f"{n_threads:>7} {batch:>5} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} "
                  f"{r['audio_s'] / r['wall_s']:>10.3f} {r['audio_s'] / r['cpu_s']:>14.3f} "
                  f"{r['peak_rss_mb']:>11.0f} {vram:>12}")
        costs = engine_cost(excerpt, stems_dir, work / "engine")
        print("\nper-stem modules through the engine (--jobs 1), wall seconds on the excerpt")
        print(f"{'module':<10} {'no stems':>9} {'four stems':>11} {'added':>7}")
        for name in ("loudness", "rhythm", "harmonic"):
            a, b = costs["no stems"][name], costs["four stems"][name]
            print(f"{name:<10} {a:>9.2f} {b:>11.2f} {b - a:>7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
