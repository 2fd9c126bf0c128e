"""flamingo_gguf per-prompt vs served on the random-weight stand-in: loads, encodes, tokens, wall time.

    python -m benchmarks.flamingo_gguf [--tracks 10] [--seconds 20] [--small]

Runs the real engine twice over the same synthetic dataset (the stand-in model, real llama.cpp
binaries), once per mode, and prints one table; then predicts the saving for the real model on a
7.5-minute track from the older tool's 989 s (five prompts, each reloading the model and re-encoding).
The stand-in's own words mean nothing; only the counts and the relative times do.
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE = "flamingo_gguf"


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    from tests.support import flamingo_standin
    from tests.support.helpers import info_of, run_engine, sine, write_track
    from tui import paths

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracks", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each synthetic track")
    ap.add_argument("--small", action="store_true", help="token limits / 10 (quicker)")
    args = ap.parse_args(argv)

    subprocess.run([str(ROOT / "bin" / "build-llama"), "--variant", "cpu"], check=True)
    digest = hashlib.sha256(Path(flamingo_standin.__file__).read_bytes()).hexdigest()[:12]
    model, mmproj = flamingo_standin.build(paths.cache_dir() / "test-standins" / digest, "random")

    with tempfile.TemporaryDirectory(prefix="mirdeck-bench-flamingo-") as tmp:
        tmp = Path(tmp)
        prompts = (ROOT / "models" / "flamingo_prompts.toml").read_text()
        if args.small:
            for limit in ("500", "200", "150", "100", "300"):
                prompts = prompts.replace(f"max_tokens = {limit}\n", f"max_tokens = {int(limit) // 10}\n")
        (tmp / "prompts.toml").write_text(prompts)
        data = tmp / "ds"
        for i in range(args.tracks):
            write_track(data, f"Track {i:02d}", sine(110.0 * (i + 1), args.seconds))
        tracks = sorted(p for p in data.iterdir() if p.is_dir())
        base = {"model_file": str(model), "mmproj_file": str(mmproj), "model_label": "gguf_standin-random",
                "prompts_file": str(tmp / "prompts.toml"), "temperature": 0}
        rows = []
        for mode in ("per_prompt", "served"):
            started = time.perf_counter()
            run_engine(data, only=[MODULE], overwrite=[MODULE], jobs=1,
                       module_options={MODULE: {**base, "mode": mode}})
            wall = time.perf_counter() - started
            provs = [info_of(t)["_mirdeck"][MODULE] for t in tracks]
            texts = [tuple(info_of(t)[k] for k in sorted(info_of(t)) if k.startswith("music_flamingo_"))
                     for t in tracks]
            rows.append({"mode": mode, "loads": sum(p["model_loads"] for p in provs),
                         "encodes": sum(p["audio_encodes"] for p in provs),
                         "evaluated": sum(p["prompt_tokens_evaluated"] for p in provs),
                         "cached": sum(p.get("prompt_tokens_cached", 0) for p in provs),
                         "generated": sum(p["generated_tokens"] for p in provs), "wall": wall, "texts": texts})

    print(f"\nflamingo_gguf on the stand-in: {args.tracks} tracks x {args.seconds:g} s, 5 prompts each, "
          f"temperature 0, CPU build, {'small' if args.small else 'full'} token limits")
    print(f"{'mode':<11} {'model loads':>11} {'audio encodes':>13} {'prompt tok eval':>15} "
          f"{'prompt tok cached':>17} {'generated':>9} {'wall s':>8}")
    for r in rows:
        print(f"{r['mode']:<11} {r['loads']:>11} {r['encodes']:>13} {r['evaluated']:>15} {r['cached']:>17} "
              f"{r['generated']:>9} {r['wall']:>8.1f}")
    print(f"same text in both modes: {rows[0]['texts'] == rows[1]['texts']}")

    # Real model, 7.5 min track: per prompt = load + encode + prefill (15 windows x 750 tokens) + answer.
    # Served does load/encode/prefill once, so it saves 4/5 of the non-generation time.
    old = 989.0
    print("\nprediction for the real model on a 7.5-minute track (older tool: 989 s for five prompts, "
          "each reloading the model and re-encoding the audio)")
    print("assumption: the five answers' generation (g of the 989 s) takes the same time in both modes; "
          "everything else (model load, audio encode, 11,250-token prefill) happens 5x per prompt, 1x served")
    print(f"{'g':>5} {'served s':>9} {'saved s':>8} {'saved':>6}")
    for g in (0.1, 0.2, 0.4):
        served = g * old + (1 - g) * old / 5
        print(f"{g:>5.1f} {served:>9.0f} {old - served:>8.0f} {(old - served) / old:>6.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
