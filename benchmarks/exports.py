"""Exports and the report over many synthetic ``.INFO`` files: wall time and peak memory.

Writes N track folders (an empty ``full_mix.flac`` each: the scan only needs the name) with a
.INFO like a full run leaves (every module's keys, label dicts, a Flamingo caption, provenance),
then runs each format and the report in its own process, first from scratch and then again with
nothing changed (the incremental path), and prints a table. Peak memory is the child's max RSS.

    python -m benchmarks.exports [--tracks 10000] [--sizes 2500,10000]

Stable Audio's WebDataset shards are left out: they copy the audio, which these folders lack.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.synthetic_infos import make

FORMATS = ("jsonl", "parquet", "audiocraft", "stable-audio", "acestep")


CHILD = """
import resource, sys, time
from pathlib import Path
what, dataset, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
start, cpu0 = time.perf_counter(), time.process_time()
if what == "report":
    from tui.report import write_report
    write_report(dataset, out / "report.html")
    written = 1
else:
    from tui.export import run_export
    written = len(run_export(dataset, what, out).written)
usage = resource.getrusage(resource.RUSAGE_SELF)
print(time.perf_counter() - start, time.process_time() - cpu0, usage.ru_maxrss / 1024, written)
"""


def measure(what: str, dataset: Path, out: Path) -> tuple[float, float, float, int]:
    """(wall s, CPU s, peak MiB, files written) of one export or report in a fresh process."""
    done = subprocess.run([sys.executable, "-c", CHILD, what, str(dataset), str(out)], capture_output=True,
                          text=True, check=True)
    seconds, cpu, rss, written = done.stdout.split()
    return float(seconds), float(cpu), float(rss), int(written)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="2500,10000", help="track counts, comma-separated")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="mirdeck-bench-exports-"))
    rows = []
    try:
        for n in sizes:
            t0 = time.perf_counter()
            dataset = make(scratch / f"d{n}", n)
            print(f"{n} synthetic .INFO files written in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            for what in FORMATS + ("report",):
                out = scratch / f"out-{n}-{what}"
                first = measure(what, dataset, out)
                again = measure(what, dataset, out) if what != "report" else None
                rows.append((n, what, first, again))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"{'tracks':>7} {'output':<13} {'wall s':>7} {'CPU s':>6} {'peak MiB':>9} {'files':>6} "
          f"{'re-run wall s':>14} {'CPU s':>6} {'peak MiB':>9} {'files':>6}")
    for n, what, first, again in rows:
        tail = f"{again[0]:14.2f} {again[1]:6.2f} {again[2]:9.0f} {again[3]:6d}" if again else ""
        print(f"{n:7d} {what:<13} {first[0]:7.2f} {first[1]:6.2f} {first[2]:9.0f} {first[3]:6d} {tail}")


if __name__ == "__main__":
    main()
