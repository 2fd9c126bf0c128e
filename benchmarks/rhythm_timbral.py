"""Realtime factors and peak memory of the rhythm and timbral backends.

    python -m benchmarks.rhythm_timbral [--seconds 450] [--skip-baseline]

Synthesises a track (44.1 kHz stereo FLAC, drums/bass/other stems and a vocal-range lead),
decodes each file once as the engine does, then runs each measurement in its own process (so
peak memory is per worker, as in a run):

* rhythm: the backend's ``process`` (beats on the mix, onsets on the mix and three stems), and
  its stages alone; essentia's own RhythmExtractor2013, whose beats the backend's tracker
  reproduces, in a process of its own (``rhythm_essentia``);
* timbral: the backend's ``process`` (decoded array, accelerations) and, as the baseline, the
  eight ``timbral_models`` functions called on the file path one after another (the older tool's
  way; only the compatibility layer applied, which it needs to run at all). Both sets of values
  are printed side by side.
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

import numpy as np

RATE = 44100
TIMBRAL_NAMES = ("brightness", "roughness", "hardness", "depth", "booming", "sharpness", "warmth")


def synthesise(folder: Path, seconds: float) -> Path:
    """A track folder with a mix and drums/bass/other stems at 124 BPM in A minor."""
    import soundfile

    from tui import demo

    rng = np.random.default_rng(11)
    bpm = 124.0
    drums = demo.drums(bpm, seconds, rng)
    bass = demo.bassline([45, 41, 36, 43], bpm, seconds) * 0.6
    other = demo.progression([[57, 60, 64], [53, 57, 60], [48, 52, 55], [55, 59, 62]], bpm, seconds) * 0.5
    stems = {"drums": np.stack([drums, drums], 1), "bass": np.stack([bass, bass], 1),
             "other": np.stack([other * 0.9, other * 1.1], 1)}
    mix = sum(stems.values())
    scale = 0.89 / np.max(np.abs(mix))
    track = folder / "Bench - Long Groove"
    track.mkdir(parents=True, exist_ok=True)
    soundfile.write(track / "full_mix.flac", (mix * scale).astype(np.float32), RATE, subtype="PCM_16")
    for name, signal in stems.items():
        soundfile.write(track / f"{name}.flac", (signal * scale).astype(np.float32), RATE,
                        subtype="PCM_16")
    return track


def decode_once(track: Path, cache: Path) -> dict:
    """Decode each file once to the shared .npy the workers map (as backends/decoder.py does)."""
    from backends.audio import decode_file, resample, write_pcm

    sources = {}
    for path in sorted(track.glob("*.flac")):
        name = "mix" if path.stem == "full_mix" else path.stem
        data, rate = decode_file(path)
        target = cache / f"{name}.npy"
        write_pcm(target, data)
        pcm = {"native": str(target), str(rate): str(target)}
        for other in (22050,):  # the rhythm backend's onset rate
            write_pcm(cache / f"{name}@{other}.npy", resample(data, rate, other))
            pcm[str(other)] = str(cache / f"{name}@{other}.npy")
        sources[name] = {"path": str(path), "sample_rate": rate, "channels": int(data.shape[1]),
                         "frames": int(data.shape[0]), "pcm": pcm}
    return sources


def _peak_rss_mb() -> float:
    from backends.process_memory import peak_rss_bytes

    # Not rusage's maxrss, which carries this benchmark's own memory (the synthesised track)
    # into every worker it starts.
    return peak_rss_bytes() / 2 ** 20


# -- what each worker process measures ---------------------------------------------------------

def _track(request: dict):
    from backends.track import Track

    return Track.from_request(request)


def measure_rhythm(request: dict) -> dict:
    import librosa  # noqa: F401 - import time is start-up cost, not per-track cost

    from backends.extractors import rhythm
    from backends.extractors.rhythm.onsets import detect_onsets

    extractor = rhythm.create()
    track = _track(request)
    # librosa compiles its numba kernels on first use: once per worker, not per track.
    detect_onsets(np.random.default_rng(0).standard_normal(RATE).astype(np.float32))
    out, cpu, rss = {}, {}, {}

    def timed(stage, work):
        began, began_cpu = time.perf_counter(), time.process_time()
        result = work()
        out[stage] = time.perf_counter() - began
        cpu[stage] = time.process_time() - began_cpu
        rss[stage] = _peak_rss_mb()
        return result

    # The whole module first, so that its peak memory is its own, not a stage's left-over.
    features = timed("rhythm process (all of it)", lambda: extractor.process(track)).features
    mix = extractor._mono(track, "mix", rhythm.RATE)
    timed("beats on mix (multi-feature tracker)", lambda: extractor._beats(mix))
    for name in ("mix", "drums", "bass", "other"):
        audio = extractor._mono(track, name, rhythm.ONSET_RATE)
        timed(f"onsets on {name} (librosa)", lambda: detect_onsets(audio))
    return {"seconds": out, "cpu_seconds": cpu, "stage_rss_mb": rss, "features": features,
            "peak_rss_mb": _peak_rss_mb()}


def measure_rhythm_essentia(request: dict) -> dict:
    """essentia's own RhythmExtractor2013 on the mix, in its own process (it holds ~2 GB on 7.5
    minutes): what the backend's tracker reproduces."""
    import essentia.standard as es

    from backends.audio import to_mono
    from backends.extractors import rhythm

    data, _ = _track(request).audio("mix", rhythm.RATE)
    mix = np.ascontiguousarray(to_mono(np.asarray(data)), dtype=np.float32)
    extractor = es.RhythmExtractor2013(method="multifeature", minTempo=40, maxTempo=rhythm.MAX_BPM)
    began, began_cpu = time.perf_counter(), time.process_time()
    bpm, ticks, confidence, _, _ = extractor(mix)
    stage = "for reference: essentia RhythmExtractor2013"
    return {"seconds": {stage: time.perf_counter() - began},
            "cpu_seconds": {stage: time.process_time() - began_cpu},
            "features": {"bpm": float(bpm), "beat_count": len(ticks),
                         "beat_confidence": float(confidence)},
            "peak_rss_mb": _peak_rss_mb()}


def measure_timbral(request: dict) -> dict:
    from backends.extractors import timbral

    extractor = timbral.create()
    track = _track(request)
    began, began_cpu = time.perf_counter(), time.process_time()
    features = extractor.process(track).features
    stage = "timbral process (decoded once, accelerated)"
    return {"seconds": {stage: time.perf_counter() - began},
            "cpu_seconds": {stage: time.process_time() - began_cpu},
            "features": features, "peak_rss_mb": _peak_rss_mb()}


def measure_timbral_baseline(request: dict) -> dict:
    from backends.extractors.timbral import compat as timbral_compat

    package = timbral_compat.load()
    path = request["sources"]["mix"]["path"]
    features = {}
    began, began_cpu = time.perf_counter(), time.process_time()
    for name in TIMBRAL_NAMES:
        features[name] = float(getattr(package, f"timbral_{name}")(path))
    _, probability = package.timbral_reverb(path, dev_output=True)
    features["reverberation"] = float(probability) * 100
    stage = "timbral baseline (8 functions on the file path)"
    return {"seconds": {stage: time.perf_counter() - began},
            "cpu_seconds": {stage: time.process_time() - began_cpu},
            "features": features, "peak_rss_mb": _peak_rss_mb()}


MEASURES = {"rhythm": measure_rhythm, "rhythm_essentia": measure_rhythm_essentia,
            "timbral": measure_timbral, "timbral_baseline": measure_timbral_baseline}


def run_worker(kind: str, request: dict) -> dict:
    """Run one measurement in a fresh process; returns its JSON answer."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.rhythm_timbral", "--worker", kind],
                          input=json.dumps(request), capture_output=True, text=True, env=env, cwd=root)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=450.0, help="track length (default 7.5 min)")
    parser.add_argument("--skip-baseline", action="store_true", help="skip the slow timbral baseline")
    parser.add_argument("--only", choices=sorted(MEASURES), action="append",
                        help="run only these measurements (repeatable)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        request = json.loads(sys.stdin.read())
        result = MEASURES[args.worker](request)
        sys.stdout.write(json.dumps(result, default=float) + "\n")
        return 0

    with tempfile.TemporaryDirectory(prefix="mirdeck-bench-") as tmp:
        tmp = Path(tmp)
        began = time.perf_counter()
        track = synthesise(tmp / "dataset", args.seconds)
        print(f"synthesised {args.seconds:.0f} s in {time.perf_counter() - began:.1f} s: {track}")
        cache = tmp / "pcm"
        cache.mkdir()
        began = time.perf_counter()
        sources = decode_once(track, cache)
        decode_s = time.perf_counter() - began
        request = {"id": "bench", "track": {"folder": str(track), "name": track.name},
                   "sources": sources}
        kinds = args.only or (["rhythm", "rhythm_essentia", "timbral"]
                              + ([] if args.skip_baseline else ["timbral_baseline"]))
        results = {kind: run_worker(kind, request) for kind in kinds}

    audio_s = args.seconds
    print(f"\naudio: {audio_s:.0f} s, 44.1 kHz stereo, mix + drums/bass/other; "
          f"decoded once in {decode_s:.2f} s; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}\n")
    # CPU seconds of the (single-threaded) worker are what it would take on an idle core; on a
    # shared machine the wall clock mostly measures the other processes.
    print(f"{'measurement':50s} {'wall s':>7s} {'x rt':>6s} {'CPU s':>7s} {'x rt CPU':>8s} "
          f"{'peak RSS MB':>11s}")
    for kind, result in results.items():
        for stage, seconds in result["seconds"].items():
            cpu = result["cpu_seconds"][stage]
            rss = result.get("stage_rss_mb", {}).get(stage, result["peak_rss_mb"])
            print(f"{stage:50s} {seconds:7.2f} {audio_s / seconds:6.1f} {cpu:7.2f} "
                  f"{audio_s / cpu:8.1f} {rss:11.0f}")
    if "timbral_baseline" in results and "timbral" in results:
        for clock in ("seconds", "cpu_seconds"):
            fast = results["timbral"][clock]["timbral process (decoded once, accelerated)"]
            slow = results["timbral_baseline"][clock]["timbral baseline (8 functions on the file path)"]
            print(f"\ntimbral speed-up over the file-path baseline ({clock}): {slow / fast:.2f}x")
        print(f"\n{'timbral key':16s} {'mirdeck':>12s} {'baseline':>12s} {'difference':>12s}")
        for key, value in results["timbral"]["features"].items():
            base = results["timbral_baseline"]["features"][key]
            print(f"{key:16s} {value:12.6f} {base:12.6f} {value - base:12.2e}")
    if "rhythm" in results:
        print("\nrhythm features:", json.dumps(results["rhythm"]["features"], default=float))
    if "rhythm_essentia" in results:
        print("essentia's RhythmExtractor2013 (before the half-tempo repair and snapping):",
              json.dumps(results["rhythm_essentia"]["features"], default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
