"""essentia_tf with stand-in graphs: graph loads per run and the time mirdeck spends per track
outside TensorFlow.

    python -m benchmarks.essentia_tf [--tracks 20] [--seconds 30] [--jobs 1] [--reference 5]

The stand-ins (tests/support/essentia_standins.py) have the real interfaces but trivial graphs, so the
time inside essentia's predict calls here is essentia's own mel spectrograms and patching plus
TensorFlow's session overhead; the real graphs' compute needs the real weights. The reference
column is the plain way: per track, essentia's MonoLoader at 16 kHz and freshly created
algorithms (each loading its graph), in this process.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

RATE = 44100


def synthesise(root: Path, count: int, seconds: float) -> list[Path]:
    """Tracks of chords over a click track and noise, varied in tempo and level, as FLAC."""
    from tests.support.helpers import write_track

    rng = np.random.default_rng(7)
    folders = []
    t = np.arange(int(seconds * RATE)) / RATE
    for i in range(count):
        bpm = 80 + 5 * i
        clicks = (np.mod(t, 60 / bpm) < 0.01) * rng.standard_normal(t.size) * 0.4
        chord = sum(np.sin(2 * np.pi * f * t) for f in (220 * 2 ** (i % 12 / 12), 277.2, 329.6)) * 0.1
        mix = (chord + clicks + 0.02 * rng.standard_normal(t.size)) * (0.5 + 0.5 * (i % 3) / 2)
        stereo = np.stack([mix, mix * 0.9], axis=1).astype(np.float32)
        folders.append(write_track(root, f"Artist {i:02d} - Track {i:02d}", stereo))
    return folders


def engine_run(dataset: Path, weights: Path, jobs: int):
    from tests.support.helpers import run_engine
    from tui.run import events as ev

    os.environ["MIRDECK_MODELS_DIR"] = str(weights)
    log_dir = dataset.parent / "log"
    began = time.perf_counter()
    events, stats = run_engine(dataset, only=["essentia_tf"], jobs=jobs, log_dir=log_dir, overwrite=["all"])
    wall = time.perf_counter() - began
    decode = {e.track: e.wall_seconds for e in events if isinstance(e, ev.TrackDecoded)}
    module = {e.track: e.wall_seconds for e in events if isinstance(e, ev.ModuleFinished)}
    failed = [e for e in events if isinstance(e, ev.ModuleFailed)]
    if failed:
        raise SystemExit(f"essentia_tf failed: {failed[0].message}")
    return events, stats, log_dir, wall, decode, module


def graph_loads(log_dir: Path) -> dict[str, dict[str, int]]:
    """model -> {worker pid: loads}, from the run's workers.log."""
    loads: dict[str, dict[str, int]] = {}
    for line in (log_dir / "workers.log").read_text(encoding="utf-8").splitlines():
        if "essentia_tf: loaded graph " in line:
            pid = line.split("essentia_tf[")[1].split("]")[0]
            model = line.split("loaded graph ")[1].split()[0]
            loads.setdefault(model, {}).setdefault(pid, 0)
            loads[model][pid] += 1
    return loads


def decode_seconds(folders: list[Path]) -> list[float]:
    """Decode + resample to 16 kHz per track, the decode worker's own code, timed in this process
    (the engine's TrackDecoded time also holds the wait for a free CPU slot)."""
    from backends.audio import decode_file, resample

    times = []
    for folder in folders:
        began = time.perf_counter()
        data, rate = decode_file(folder / "full_mix.flac")
        resample(data, rate, 16000)
        times.append(time.perf_counter() - began)
    return times


def reference(folders: list[Path], weights: Path) -> list[float]:
    """Seconds per track the plain way: load at 16 kHz and build every algorithm per track."""
    from backends.extractors.essentia_tf.catalogue import EMBEDDING, HEADS, metadata
    from backends.extractors.essentia_tf.graphs import import_essentia

    es = import_essentia()
    times = []
    for folder in folders:
        began = time.perf_counter()
        audio = es.MonoLoader(filename=str(folder / "full_mix.flac"), sampleRate=16000, resampleQuality=4)()
        embedder = es.TensorflowPredictEffnetDiscogs(
            graphFilename=str(weights / EMBEDDING.file), output=EMBEDDING.output)
        embeddings = embedder(audio)
        for head in HEADS.values():
            if head.name == "voice":
                continue
            meta = metadata(head.model)
            if head.kind == "labels":
                algorithm = es.TensorflowPredict2D(graphFilename=str(weights / head.file),
                                                   input=meta.input, output=meta.output)
                np.mean(algorithm(embeddings), axis=0)
            else:
                algorithm = es.TensorflowPredictVGGish(graphFilename=str(weights / head.file))
                np.mean(algorithm(audio), axis=0)
        times.append(time.perf_counter() - began)
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--reference", type=int, default=5, help="tracks for the plain reference (0: skip)")
    args = parser.parse_args(argv)

    from tests.support.essentia_standins import write_standins
    from tui.run.store import read_info

    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = root / "weights"
        write_standins(weights)
        folders = synthesise(root / "data", args.tracks, args.seconds)
        events, stats, log_dir, wall, decode, module = engine_run(root / "data", weights, args.jobs)

        loads = graph_loads(log_dir)
        table = Table(title=f"graph loads in one run ({args.tracks} tracks, jobs={args.jobs})")
        for col in ("model", "workers", "loads", "loads per worker"):
            table.add_column(col)
        for model, per_pid in sorted(loads.items()):
            table.add_row(model, str(len(per_pid)), str(sum(per_pid.values())),
                          str(max(per_pid.values())))
        console.print(table)

        # Per track in dataset order; the first track pays the worker's imports and graph loads.
        stages: dict[str, list[float]] = {}
        for folder in folders:
            prov = read_info(folder / f"{folder.name}.INFO")["_mirdeck"]["essentia_tf"]
            for stage, value in prov["stage_seconds"].items():
                stages.setdefault(stage, []).append(value)
        names = [f.name for f in folders]
        stages["decode"] = decode_seconds(folders)
        stages["module"] = [module[name] for name in names]
        stages["predict"] = [a + b + c for a, b, c in zip(stages["embeddings"], stages["heads"], stages["vggish"])]
        stages["outside"] = [d + m - p for d, m, p in zip(stages["decode"], stages["module"], stages["predict"])]

        per_track = Table(title=f"seconds per {args.seconds:.0f} s track, stand-in graphs "
                                f"(first track; median of the other {len(folders) - 1})")
        for col, justify in (("part", "left"), ("first", "right"), ("steady", "right"), ("what it is", "left")):
            per_track.add_column(col, justify=justify)
        rows = [
            ("decode", "decode + resample to 16 kHz (decode worker's code; shared by all modules)"),
            ("audio", "map the 16 kHz PCM, downmix to mono"),
            ("load", "graph loading (once per worker)"),
            ("embeddings", "TensorflowPredictEffnetDiscogs: mel, patches, batch of 64, TF"),
            ("heads", "3 x TensorflowPredict2D on the embeddings"),
            ("vggish", "2 x TensorflowPredictVGGish: mel, patches, TF"),
            ("labels", "patch means, threshold, top-k, rounding"),
            ("module", "essentia_tf total as the engine measured it"),
            ("outside", "decode + module - essentia predict calls"),
        ]
        for key, what in rows:
            values = stages[key]
            per_track.add_row(key, f"{values[0]:.4f}", f"{statistics.median(values[1:] or values):.4f}", what)
        steady_module = statistics.median(stages["module"][1:] or stages["module"])
        per_track.add_row("realtime", "", f"{args.seconds / steady_module:.1f}x", "audio s / module s (steady)")
        per_track.add_row("run wall", f"{wall:.2f}", "", "whole run, worker start-up included")
        console.print(per_track)

        if args.reference:
            ref = reference(folders[: args.reference], weights)
            mirdeck_steady = [d + m for d, m in zip(stages["decode"][1:], stages["module"][1:])]
            comp = Table(title="per track: mirdeck vs the plain way (same stand-ins, one process each)")
            comp.add_column("way")
            comp.add_column("s / track", justify="right")
            comp.add_row("plain: MonoLoader + new algorithms per track (median)", f"{statistics.median(ref):.4f}")
            comp.add_row("mirdeck: decode + essentia_tf, after the first track (median)",
                          f"{statistics.median(mirdeck_steady or [0.0]):.4f}")
            console.print(comp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
