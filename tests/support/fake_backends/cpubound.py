"""Spends a known amount of CPU, half in itself and half in a helper process (as flamingo_gguf's
llama-server does), then waits without CPU: its wall time and CPU time differ by construction."""
import subprocess
import sys
import time

from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="cpubound", version="1", description="test: known CPU and wall time",
                   keys=("cpubound_ok",), audio=(AudioNeed("mix", 22050),), timeout_s=60)

SPIN = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\n"


class CpuBound(Extractor):
    def process(self, track: Track) -> Result:
        seconds = float(track.options.get("spin_s", 0.4))
        helper = subprocess.Popen([sys.executable, "-c", SPIN.format(s=seconds)])
        exec(SPIN.format(s=seconds))
        helper.wait()
        time.sleep(float(track.options.get("idle_s", 1.0)))
        return Result({"cpubound_ok": 1})


def create():
    return CpuBound()
