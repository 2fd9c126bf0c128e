"""Realtime factor and peak memory of the DSP backends on a synthesised 7.5-minute track.

    python -m benchmarks.dsp [--seconds 450] [--repeat 2] [--only loudness ...]

Writes a 44.1 kHz stereo FLAC mix with four stems (drums, bass, other, vocals), decodes each file
once and resamples it to 22.05 kHz for rhythm's onsets (as the engine's decode step does, timed),
then runs each module in its real worker process
(``python -m backends.worker``) over the shared PCM and reads the worker's own wall time for the
request (model/library loading excluded: a worker loads once per run). Peak memory is each
worker's maximum resident set (``VmHWM``), library imports included. Plain reference
implementations run in this process for comparison. Prints a table.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from backends import protocol as p
from backends.audio import decode_file, write_pcm
from tui import demo

MODULES = ["loudness", "spectral", "multiband_rms", "chroma", "harmonic", "rhythm", "timbral"]
RATE = 44100
# Rhythm's onsets read 22.05 kHz copies, which the engine's decode step makes once per track.
RESAMPLED_RATES = (22050,)
# Timbral takes minutes on 7.5 minutes of audio: one request tells its cost well enough.
MAX_REPEAT = {"timbral": 1}


def synthesise(folder: Path, seconds: float) -> dict[str, Path]:
    """A groove in A minor with drums, bass, chords and a vocal-like vibrato melody."""
    import soundfile

    rng = np.random.default_rng(1)
    drums = demo.drums(124, seconds, rng)
    bass = demo.bassline([45, 41, 36, 43], 124, seconds) * 0.6
    other = demo.progression([[57, 60, 64], [53, 57, 60], [48, 52, 55], [55, 59, 62]], 124, seconds) * 0.5
    t = np.arange(int(seconds * RATE)) / RATE
    melody = 440 * 2 ** (np.array([0, 3, 7, 5, 3, 2, 0, -2]) / 12)
    freq = melody[(t // (60 / 124 * 2)).astype(int) % len(melody)] * (1 + 0.01 * np.sin(2 * np.pi * 5.5 * t))
    vocals = 0.25 * np.sin(2 * np.pi * np.cumsum(freq) / RATE) * (0.6 + 0.4 * np.sin(2 * np.pi * t / 8) ** 2)
    stems = {"drums": drums, "bass": bass, "other": other, "vocals": vocals}
    stereo = {name: np.stack([x * 0.9, x * 1.1], axis=1) for name, x in stems.items()}
    mix = sum(stereo.values())
    scale = 10 ** (-1 / 20) / np.max(np.abs(mix))
    paths = {}
    for name, data in {"mix": mix, **stereo}.items():
        path = folder / ("full_mix.flac" if name == "mix" else f"{name}.flac")
        soundfile.write(path, (data * scale).astype(np.float32), RATE, subtype="PCM_16")
        paths[name] = path
    return paths


def decode_all(paths: dict[str, Path], cache: Path) -> tuple[dict, float, dict]:
    """Decode each file once and resample it to the rates the modules ask for, as the engine's
    decode step does; returns (sources for a request, seconds, decoded arrays for references)."""
    from backends.audio import resample

    started = time.perf_counter()
    sources, arrays = {}, {}
    for name, path in paths.items():
        data, rate = decode_file(path)
        pcm = cache / f"{name}@native.npy"
        write_pcm(pcm, data)
        # The files are 44.1 kHz already: the 44100 entry is the same PCM, as the decoder shares it.
        entries = {"native": str(pcm), "44100": str(pcm)}
        for other in RESAMPLED_RATES:
            entries[str(other)] = str(cache / f"{name}@{other}.npy")
            write_pcm(Path(entries[str(other)]), resample(data, rate, other))
        sources[name] = {"path": str(path), "sample_rate": rate, "channels": int(data.shape[1]),
                         "frames": int(data.shape[0]), "pcm": entries}
        arrays[name] = data
    return sources, time.perf_counter() - started, arrays


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_worker(module: str, folder: Path, sources: dict, repeat: int) -> tuple[list[float], list[float], float]:
    """Run one module's real worker ``repeat`` times on the track; (walls, CPU seconds, peak MiB).

    CPU seconds say what one core costs even when other work shares the machine; wall seconds
    are what the user waits on a loaded machine."""
    from backends.registry import get

    wanted = {need.source for need in get(module).audio}
    request_sources = {k: v for k, v in sources.items() if k in wanted}
    return run_requests(module, [(folder, request_sources)] * repeat, "bench")


def run_requests(module: str, tracks: list[tuple[Path, dict]],
                 label: str) -> tuple[list[float], list[float], float]:
    """One worker of ``module`` for every (track folder, sources) in turn: (wall s per request,
    CPU s per request, the worker's peak MiB)."""
    from backends.process_memory import peak_rss_bytes
    from backends.registry import get

    proc = subprocess.Popen([sys.executable, "-m", "backends.worker", get(module).entry],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    hello = p.decode(proc.stdout.readline())
    if not hello.get("ready"):
        raise SystemExit(f"{module} did not start: {hello}")
    walls, cpus = [], []
    for i, (folder, sources) in enumerate(tracks):
        cpu_before = cpu_seconds(proc.pid)
        proc.stdin.write(p.encode(p.request(f"{label}#{i}", track={"folder": str(folder), "name": folder.name},
                                            sources=sources)))
        proc.stdin.flush()
        while True:
            reply = p.decode(proc.stdout.readline())
            if reply["type"] == "result":
                walls.append(reply["wall_seconds"])
                cpus.append(cpu_seconds(proc.pid) - cpu_before)
                break
            if reply["type"] == "error":
                raise SystemExit(f"{module} failed on {folder.name}: {reply}")
    peak = peak_rss_bytes(proc.pid) / 2**20
    proc.stdin.write(p.encode({"type": "shutdown"}))
    proc.stdin.close()
    proc.wait()
    return walls, cpus, peak


def references(arrays: dict) -> list[tuple[str, float]]:
    """Straightforward implementations of the same measures, timed in this process."""
    import scipy.signal

    from backends.dsp import essentia_standard, mono

    rows = []
    mix = arrays["mix"]
    clock = lambda: (time.perf_counter(), time.process_time())  # noqa: E731

    def done(label, since):
        rows.append((label, time.perf_counter() - since[0], time.process_time() - since[1]))

    es = essentia_standard()

    started = clock()
    audio = mono(mix)
    window, spectrum = es.Windowing(type="hann", size=2048), es.Spectrum(size=2048)
    flatness, flux = es.Flatness(), es.Flux()
    moments, shape = es.CentralMoments(range=RATE / 2), es.DistributionShape()
    for frame in es.FrameGenerator(audio, frameSize=2048, hopSize=1024, startFromZero=True):
        mag = spectrum(window(frame))
        flatness(np.square(mag) + np.float32(1e-20))
        flux(mag)
        shape(moments(mag))
    done("spectral: essentia, one call per frame", started)

    started = clock()
    scipy.signal.welch(mix.T, fs=RATE, nperseg=16384, axis=-1)
    done("multiband_rms: scipy.signal.welch", started)

    import pyloudnorm

    started = clock()
    for source in ("mix", "drums", "bass", "other", "vocals"):
        pyloudnorm.Meter(RATE).integrated_loudness(arrays[source].astype(np.float64))
    done("loudness: pyloudnorm lufs only, mix + 4 stems", started)

    import pyebur128 as ebur

    modes = ebur.MeasurementMode
    for label, mode in (("loudness split: mix I+LRA, no true peak", modes.MODE_I | modes.MODE_LRA),
                        ("loudness split: mix true peak alone", modes.MODE_TRUE_PEAK)):
        started = clock()
        state = ebur.R128State(2, RATE, mode)
        state.add_frames(np.ascontiguousarray(mix, dtype=np.float32).reshape(-1), len(mix))
        done(label, started)

    from backends.extractors.loudness.true_peak import true_peak

    started = clock()
    true_peak(mix, RATE)
    done("loudness split: mix true peak, pruned (ours)", started)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=450.0, help="track length (default 7.5 min)")
    parser.add_argument("--repeat", type=int, default=2, help="requests per module; the best is reported")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference implementations")
    parser.add_argument("--only", choices=MODULES, action="append", help="run only these modules (repeatable)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mirdeck-bench-") as tmp:
        folder = Path(tmp) / "Bench - Seven and a Half"
        folder.mkdir()
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else tmp
        cache = Path(tempfile.mkdtemp(prefix="mirdeck-bench-pcm-", dir=shm))
        try:
            paths = synthesise(folder, args.seconds)
            sources, decode_seconds, arrays = decode_all(paths, cache)
            audio = sources["mix"]["frames"] / RATE
            print(f"track: {audio:.1f} s, 44.1 kHz stereo, mix + 4 stems (FLAC); load average "
                  f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores\n")
            print(f"{'module':<44} {'wall s':>7} {'x rt wall':>9} {'cpu s':>7} {'x rt/core':>9} {'peak MiB':>9}")
            print("-" * 90)
            print(f"{'decode 5 FLAC files once, resample (shared)':<44} {decode_seconds:>7.2f} "
                  f"{audio / decode_seconds:>9.0f}")
            total_wall = total_cpu = 0.0
            for module in args.only or MODULES:
                walls, cpus, peak = run_worker(module, folder, sources,
                                               min(args.repeat, MAX_REPEAT.get(module, args.repeat)))
                wall, cpu = min(walls), min(cpus)
                total_wall, total_cpu = total_wall + wall, total_cpu + cpu
                print(f"{module:<44} {wall:>7.2f} {audio / wall:>9.0f} {cpu:>7.2f} {audio / cpu:>9.0f} {peak:>9.0f}")
            print(f"{'these modules, one after another':<44} {total_wall:>7.2f} {audio / total_wall:>9.0f} "
                  f"{total_cpu:>7.2f} {audio / total_cpu:>9.0f}")
            if not args.no_reference:
                print("\nreference implementations (same audio, this process; wall and CPU):")
                for label, wall, cpu in references(arrays):
                    print(f"{label:<44} {wall:>7.2f} {audio / wall:>9.0f} {cpu:>7.2f} {audio / cpu:>9.0f}")
        finally:
            for f in cache.iterdir():
                f.unlink()
            cache.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
