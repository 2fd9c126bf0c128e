"""A worker that keeps freed memory: the second whole-track array costs no page faults, and the
pages go back to the system once it holds more than its budget."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from backends import heap_reuse

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    kept = heap_reuse.keep_freed_memory() if sys.argv[1] == "keep" else False
    counts = []
    for _ in range(3):  # three 'functions' of a track, each making and dropping a 160 MB array
        before = faults()
        a = np.ones(20_000_000)
        del a
        counts.append(faults() - before)
    held = rss_mb()
    within_budget = heap_reuse.give_back(above_bytes=4 * 2**30)  # 180 MB is under 4 GB: kept
    still = rss_mb()
    heap_reuse.give_back(above_bytes=100 * 2**20)  # over 100 MB: trimmed
    print(json.dumps({"kept": kept, "faults": counts, "held_mb": held, "within_budget": within_budget,
                      "still_mb": still, "after_mb": rss_mb()}))
""")


def _run(mode: str) -> dict:
    import json

    out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_arrays_are_reused_and_given_back_over_the_budget():
    plain, kept = _run("plain"), _run("keep")
    assert kept["kept"] is True
    # Without it every array is mapped afresh: its pages fault in each time.
    assert min(plain["faults"][1:]) > 0.5 * plain["faults"][0]
    # With it the second and third arrays reuse the first one's pages.
    assert max(kept["faults"][1:]) < 0.05 * kept["faults"][0]
    assert kept["held_mb"] > plain["held_mb"] + 100  # the 160 MB stayed in the process ...
    assert kept["within_budget"] is False and kept["still_mb"] > kept["held_mb"] - 10  # within budget
    assert kept["after_mb"] < kept["held_mb"] - 100  # ... until it held more than the budget
