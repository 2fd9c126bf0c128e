"""Where the two Music Flamingo back ends part: prompt token ids, audio positions, first-token top-5.

    python -m benchmarks.flamingo_framing [--seconds 30 20] [--hf DIR]

Takes one transformers checkpoint folder (default: the test stand-in), converts that very folder to
an f32 GGUF with llama.cpp's own converter, and asks every question of the prompts file on both
sides about the same 16 kHz tone:
- the text parts of the prompt: llama-server's ``/apply-template`` then ``/tokenize`` (split where the
  audio goes) against the transformers processor's ``input_ids``;
- the number of audio positions: llama-server's ``prompt_n`` minus its text tokens, against the
  processor's count of ``<sound>`` slots;
- the first generated token: llama-server's top-5 log-probabilities (``logprobs``, greedy) against
  transformers' log-softmax of the same position, as mirdeck runs it, and once more with llama.cpp's
  audio framing rebuilt in transformers (audio zero-padded to whole 30 s windows, every frame
  attended, and the literal ``<sound>`` token llama.cpp puts before the audio embeddings).
If the third column matches llama.cpp to float32 noise and the second does not, the difference is
the framing of the audio, not the numerics of the weights.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from tests.support.flamingo_framing import gguf_of, gguf_side, hf_side, tone
from tests.support.flamingo_standin import DEFAULT_SYSTEM


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30.0, 20.0])
    parser.add_argument("--hf", type=Path, default=None, help="checkpoint folder (default: the test stand-in)")
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from backends.flamingo.hf import load
    from backends.flamingo.llama_cli import context_size, tool_path
    from backends.flamingo.llama_server import LlamaServer
    from backends.flamingo.prompts import load_prompts

    torch.manual_seed(0)
    if args.hf is None:
        from tests.support.flamingo_hf_standin import standin

        args.hf = standin("audioflamingo3")
    prompts = load_prompts()
    loaded = load(args.hf, dtype="float32")
    out: dict = {"checkpoint": str(args.hf), "durations": {}, "vocab": len(loaded.processor.tokenizer)}
    model, mmproj = gguf_of(Path(args.hf))
    server = LlamaServer(tool_path("llama-server"), model=model, mmproj=mmproj,
                         ctx_size=context_size(max(args.seconds), 8), gpu_layers=0)
    try:
        out["gguf_chat_template_default_system"] = DEFAULT_SYSTEM in server.post(
            "/apply-template", {"messages": [{"role": "user", "content": "x"}]})["prompt"]
        for seconds in args.seconds:
            samples = tone(seconds)
            rows = {}
            for prompt in prompts.prompts:
                g = gguf_side(server, samples, prompt.text, prompts.system, loaded.audio_token)
                h = hf_side(loaded, samples, prompt.text, prompts.system, llama_framing=False)
                hl = hf_side(loaded, samples, prompt.text, prompts.system, llama_framing=True)
                rows[prompt.name] = {"gguf": g, "hf": h, "hf_llama_framing": hl}
            out["durations"][str(seconds)] = rows
    finally:
        server.close()
    report(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


def _agree(a, b) -> str:
    ids_a, ids_b = [t[0] for t in a], [t[0] for t in b]
    gap = max(abs(x[2] - y[2]) for x, y in zip(a, b)) if ids_a == ids_b else None
    return ("top-5 same order" + (f", max |Δ logprob| {gap:.2e}" if gap is not None else "")
            if ids_a == ids_b else f"top-1 {'same' if ids_a[0] == ids_b[0] else 'differs'}, "
                                   f"top-5 overlap {len(set(ids_a) & set(ids_b))}/5")


def report(out: dict) -> None:
    print(f"checkpoint: {out['checkpoint']}")
    print(f"GGUF chat template adds the default system turn: {out['gguf_chat_template_default_system']}")
    for seconds, rows in out["durations"].items():
        print(f"\n== {seconds} s tone ==  (log-probabilities; a uniform guess over the vocabulary is "
              f"{-math.log(out['vocab']):.2f})")
        for name, r in rows.items():
            g, h, hl = r["gguf"], r["hf"], r["hf_llama_framing"]
            text_same = g["before"][:-1] == h["before"] and g["after"] == h["after"]
            print(f"{name:16} text ids identical (minus llama.cpp's <sound>): {text_same}; "
                  f"text tokens gguf {len(g['before']) + len(g['after'])} hf {len(h['before']) + len(h['after'])}; "
                  f"audio positions gguf {g['audio']} hf {h['audio']} hf+llama-framing {hl['audio']}")
            print(f"{'':16} first token: gguf {g['top5'][0][1]!r} {g['top5'][0][2]:.4f} | "
                  f"hf {h['top5'][0][1]!r} {h['top5'][0][2]:.4f} | hf+llama-framing {hl['top5'][0][1]!r} "
                  f"{hl['top5'][0][2]:.4f}")
            print(f"{'':16} top-1 lead over top-2: gguf {g['top5'][0][2] - g['top5'][1][2]:.4f} "
                  f"hf {h['top5'][0][2] - h['top5'][1][2]:.4f}")
            print(f"{'':16} gguf vs hf: {_agree(g['top5'], h['top5'])}; "
                  f"gguf vs hf+llama-framing: {_agree(g['top5'], hl['top5'])}")


if __name__ == "__main__":
    raise SystemExit(main())
