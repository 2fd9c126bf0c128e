"""The dashboard's GPU panel on a real GPU, for a lent device: the live screen reading the real probe
(NVML on NVIDIA) while two stand-in workers hold GPU memory, one directly (as audiobox's worker does)
and one through a child process (as flamingo_gguf's llama-server does), saved as an SVG.

    python -m benchmarks.gpu_panel --out $OUT/gpu_panel.svg [--gib 6 9]

The workers are real processes holding real allocations (``torch.empty`` on the device), not
numbers handed to the panel: what the panel shows is what the probe read, credited to each worker's
process tree as the dashboard credits it in a run. Without a GPU the script still runs and saves the
panel saying that no GPU was found (its check on a CPU machine).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

GIB = 1 << 30
MODULES = ["audiobox", "flamingo_gguf"]

# The holder prints one line once its memory is taken, then waits for its stdin to close. With
# --via-child it starts a copy of itself that holds the memory and waits on that child instead.
HOLDER = r"""
import subprocess, sys
gib, via_child = float(sys.argv[1]), sys.argv[2] == "child"
if via_child:
    child = subprocess.Popen([sys.executable, "-c", sys.argv[3], sys.argv[1], "self", sys.argv[3]],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    print(child.stdout.readline().strip(), flush=True)
    sys.stdin.read()
    child.stdin.close()
    child.wait()
    sys.exit()
import torch
held = None
if torch.cuda.is_available():
    held = torch.empty(int(gib * (1 << 30)), dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
print(f"holding {gib:g} GiB" if held is not None else "no CUDA device: holding nothing", flush=True)
sys.stdin.read()
"""


def start_holders(gib: list[float]) -> list[subprocess.Popen]:
    holders = []
    for amount, how in zip(gib, ("self", "child")):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(amount), how, HOLDER],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        print(f"worker {proc.pid}: {proc.stdout.readline().strip()}", flush=True)
        holders.append(proc)
    return holders


def scripted_view(pids: list[int]):
    from tui.dashboard.runview import RunView
    from tui.run import events as ev

    view = RunView()
    now = time.time()
    view(ev.RunStarted(dataset="(gpu panel check)", profile="cuda", modules=MODULES, tracks=1,
                       planned={m: 1 for m in MODULES}, skipped={}, log_dir="-", time=now))
    for module, pid in zip(MODULES, pids):
        view(ev.WorkerStarted(module=module, pid=pid, device="gpu", ready=True, startup_seconds=0.0,
                              time=now))
    return view


async def capture(view, out: Path, size: tuple[int, int], seconds: float):
    """The panel's text and the probe's last reading (the app's own, credited to each worker's
    process tree), after the live screen has read the probe for ``seconds``."""
    from tui.dashboard.app import MirdeckApp
    from tui.dashboard.widgets.panels import GpuPanel

    app = MirdeckApp(view=view, probe_interval=0.5, refresh_hz=4)
    async with app.run_test(size=size) as pilot:
        await pilot.pause(seconds)
        panel = app.screen.query_one(GpuPanel)
        text = f"{panel.border_title}\n{panel.render().plain}"
        app.save_screenshot(filename=out.name, path=str(out.parent))
    return text, app.view.gpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu_panel.svg"))
    parser.add_argument("--gib", type=float, nargs=2, default=[6.0, 9.0],
                        help="GiB held by the audiobox and the flamingo_gguf stand-in workers")
    parser.add_argument("--size", type=int, nargs=2, default=[140, 40], metavar=("COLUMNS", "ROWS"))
    parser.add_argument("--seconds", type=float, default=3.0, help="how long the screen reads the probe")
    args = parser.parse_args(argv)

    holders = start_holders(args.gib)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        text, snap = asyncio.run(capture(scripted_view([h.pid for h in holders]), args.out.resolve(),
                                         tuple(args.size), args.seconds))
        if snap is None:
            print(f"the live screen read no probe in {args.seconds:g} s; try a larger --seconds", file=sys.stderr)
            return 1
        print("probe:", json.dumps({"source": snap.source, "note": snap.note,
                                    "devices": [{"name": d.name, "vram_used_gib": (d.vram_used or 0) / GIB,
                                                 "vram_total_gib": (d.vram_total or 0) / GIB} for d in snap.devices],
                                    "workers_gib": {str(pid): mem.vram / GIB for pid, mem in snap.processes.items()}}))
        print(text)
        print(f"saved {args.out}")
    finally:
        for h in holders:
            h.stdin.close()
            h.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
