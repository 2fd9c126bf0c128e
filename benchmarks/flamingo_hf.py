"""flamingo_hf on the tiny stand-in: seconds per track for five prompts, with and without reuse of
the shared prefix (system text + audio), against the plain transformers way (the processor and
``generate`` per question: audio featurised, encoded and the whole prompt evaluated five times).

    python -m benchmarks.flamingo_hf [--seconds 30 120 450] [--max-tokens 16]

The stand-in is tiny (2 layers, 64 wide), so the language model is cheap next to the audio encoder
and the 151k-word output layer: the table shows the counts and the shape of the saving, not the
real model's seconds (see benchmarks/gpu_flamingo_hf.py for those).
"""
from __future__ import annotations

import argparse
import os
import time

from rich.console import Console
from rich.table import Table


def tone(seconds: float):
    import numpy as np

    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30.0, 120.0, 450.0])
    parser.add_argument("--max-tokens", type=int, default=16, help="per question (greedy, the end token ignored)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from backends.flamingo.hf import Sampling, TrackSession, load, render_prompt
    from backends.flamingo.prompts import load_prompts
    from tests.support.flamingo_hf_standin import standin

    torch.set_num_threads(1)
    loaded = load(standin("audioflamingo3"))
    loaded.eos_ids = ()  # full token counts: every question writes max_tokens
    prompts = load_prompts()
    greedy = Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=args.max_tokens)
    table = Table(title=f"flamingo_hf stand-in, five prompts x {args.max_tokens} tokens, 1 CPU thread")
    for col in ("audio s", "way", "s / track", "featurise+encode", "prefix evals", "prompt tokens through the LM",
                "first token s (mean)"):
        table.add_column(col, justify="right")
    for seconds in args.seconds:
        pcm = tone(seconds)
        for way in ("prefix reused", "prefix recomputed", "plain generate()"):
            before = dict(loaded.stats)
            began = time.perf_counter()
            evaluated, firsts = 0, []
            if way == "plain generate()":
                for prompt in prompts.prompts:
                    prefix, suffix = render_prompt(loaded, prompt.text)
                    inputs = loaded.processor(text=[prefix + suffix], audio=[pcm], return_tensors="pt")
                    with torch.inference_mode():
                        loaded.model.generate(**inputs, max_new_tokens=args.max_tokens,
                                              min_new_tokens=args.max_tokens, do_sample=False)
                    firsts.append(None)
                    evaluated += int(inputs["input_ids"].shape[1])
                encodes, prefix_evals = 5, 5
            else:
                session = TrackSession(loaded, pcm, reuse_prefix=way == "prefix reused")
                for prompt in prompts.prompts:
                    answer = session.ask(prompt.text, greedy)
                    evaluated += answer.prompt_tokens_evaluated
                    firsts.append(answer.first_token_seconds)
                if way == "prefix reused":  # the prefix itself went through the model once
                    evaluated += session.prefix_tokens
                session.free()
                encodes = loaded.stats["audio_encodes"] - before["audio_encodes"]
                prefix_evals = loaded.stats["prefix_evaluations"] - before["prefix_evaluations"]
            wall = time.perf_counter() - began
            known = [f for f in firsts if f is not None]
            table.add_row(f"{seconds:g}", way, f"{wall:.2f}", str(encodes), str(prefix_evals), str(evaluated),
                          f"{sum(known) / len(known):.3f}" if known else "n/a")
    Console(width=160).print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
