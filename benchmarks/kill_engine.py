"""How long a run's workers outlive an engine killed with SIGKILL, and what it leaves in /dev/shm.

    python -m benchmarks.kill_engine DATASET [--modules audio_info,loudness,...] [--jobs N]
        [--after N] [--repeat R]

Starts ``mirdeck run DATASET --headless`` on real modules, waits until ``--after`` module
requests have started (the workers are busy), kills the engine with SIGKILL and polls every
worker's pid (from the run's events.jsonl) every 20 ms; prints, per try, the workers and how
long until the last was gone, the decoded audio the dead run left in its scratch folder, and
whether the next run removed it. The scratch folder is a private one (MIRDECK_PCM_DIR), so other
runs on the machine are never touched.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from tui.paths import ROOT


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [orjson.loads(x) for x in path.read_bytes().splitlines() if x.strip()]


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def one_try(dataset: Path, modules: str, jobs: int, after: int, work: Path) -> dict:
    shm, log = work / "shm", work / f"log-{time.monotonic_ns()}"
    env = {**os.environ, "MIRDECK_PCM_DIR": str(shm)}
    cmd = [sys.executable, "-m", "tui.cli", "run", str(dataset), "--headless", "--only", modules,
           "--overwrite", modules, "-j", str(jobs), "--log-dir", str(log)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while sum(e["event"] == "module_started" and e["module"] != "decode"
              for e in _events(log / "events.jsonl")) < after:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the run ended (or took too long) before enough requests started")
        time.sleep(0.02)
    workers = [e["pid"] for e in _events(log / "events.jsonl") if e["event"] == "worker_started"]
    killed = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    while any(_alive(p) for p in workers) and time.monotonic() - killed < 60:
        time.sleep(0.02)
    gone_after = time.monotonic() - killed
    left = [d for d in shm.glob("mirdeck-*")]
    left_bytes = sum(_size(d) for d in left)
    subprocess.run([sys.executable, "-m", "tui.cli", "run", str(dataset), "--headless", "--only", "audio_info",
                    "--log-dir", str(log) + "-next"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    return {"workers": len(workers), "alive_at_end": sum(_alive(p) for p in workers),
            "gone_after_s": gone_after, "left_mib": left_bytes / 2 ** 20,
            "removed_by_next": not any(d.exists() for d in left)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--modules", default="audio_info,loudness,spectral,multiband_rms,chroma,rhythm,timbral")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--after", type=int, default=4, help="module requests started before the kill")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mirdeck-kill-") as tmp:
        print(f"SIGKILL of the engine on {args.dataset} ({args.modules}, -j {args.jobs})")
        print(f"{'try':>3} {'workers':>7} {'alive after':>11} {'all gone after':>14} "
              f"{'audio left':>10} {'next run removed it':>19}")
        for i in range(args.repeat):
            r = one_try(args.dataset.resolve(), args.modules, args.jobs, args.after, Path(tmp))
            print(f"{i + 1:>3} {r['workers']:>7} {r['alive_at_end']:>11} {r['gone_after_s']:>12.2f} s "
                  f"{r['left_mib']:>6.1f} MiB {'yes' if r['removed_by_next'] else 'NO':>19}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
