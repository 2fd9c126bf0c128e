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
import io
import json
import math
import os
import re
from pathlib import Path

# llama.cpp's media marker: "<__media__>", or with a random tag per server ("<__media_Qky2...__>").
AUDIO_MARKER = re.compile(r"<__media_[A-Za-z0-9]*_?_>")
WINDOW = 30 * 16000


def tone(seconds: float):
    import numpy as np

    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


def wav_bytes(samples) -> bytes:
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, samples, 16000, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def gguf_side(server, samples, question: str, system: str, audio_prefix: str) -> dict:
    """Text ids around the audio, audio positions and first-token top-5 as llama-server sees them."""
    from backends.llama_server import chat_messages

    messages = chat_messages(wav_bytes(samples), question, system)
    prompt = server.post("/apply-template", {"messages": messages})["prompt"]
    before, after = AUDIO_MARKER.split(prompt)
    tokenize = lambda text: server.post("/tokenize", {"content": text, "add_special": False,  # noqa: E731
                                                      "parse_special": True})["tokens"]
    # mtmd puts the projector's audio-begin text (for Music Flamingo the literal "<sound>") in front of
    # the embeddings and tokenises it with the text before.
    ids_before, ids_after = tokenize(before + audio_prefix), tokenize(after)
    reply = server.post("/v1/chat/completions", {
        "messages": messages, "max_tokens": 1, "temperature": 0.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0,
        "repeat_penalty": 1.0, "samplers": ["temperature"], "seed": 0, "cache_prompt": False,
        "logprobs": True, "top_logprobs": 5}, timeout_s=600)
    total = int(reply["timings"]["prompt_n"])
    top = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    return {"prompt": prompt, "before": ids_before, "after": ids_after,
            "audio": total - len(ids_before) - len(ids_after),
            "top5": [(t.get("id"), t["token"], t["logprob"]) for t in top]}


def gguf_of(hf_dir: Path) -> tuple[Path, Path]:
    """That very checkpoint converted to f32 GGUF by llama.cpp's converter, cached beside it."""
    from tests import flamingo_standin

    out = hf_dir.parent / f"{hf_dir.name}-gguf-f32"
    model, mmproj = out / "framing.gguf", out / "framing.mmproj.gguf"
    if model.is_file() and mmproj.is_file():
        return model, mmproj
    return flamingo_standin.convert(hf_dir, out, "framing")


def hf_first_token(loaded, embeds, k: int = 5):
    import torch

    lm, head = loaded.model.model.language_model, loaded.model.lm_head
    with torch.inference_mode():
        hidden = lm(inputs_embeds=embeds).last_hidden_state[:, -1:]
        logp = torch.log_softmax(head(hidden)[0, -1].float(), dim=-1)
    values, ids = torch.topk(logp, k)
    tok = loaded.processor.tokenizer
    return [(int(i), tok.decode([int(i)]), float(v)) for v, i in zip(values, ids)]


def hf_side(loaded, samples, question: str, system: str, *, llama_framing: bool) -> dict:
    """As mirdeck runs it, or (``llama_framing``) with llama.cpp's audio framing rebuilt."""
    import numpy as np
    import torch

    from backends.flamingo_transformers import TrackSession
    from backends.llama_cpp import audio_windows

    if llama_framing:  # llama.cpp's whole 30 s windows (a silent one more at exact multiples), none masked
        padded = audio_windows(samples.size / 16000) * WINDOW
        samples = np.concatenate([samples, np.zeros(padded - samples.size, dtype=np.float32)])
    session = TrackSession(loaded, samples, system=system)
    prefix = session.prefix_ids[0]
    audio = prefix == loaded.audio_token_id
    first = int(audio.nonzero()[0])
    suffix = session.question_ids(question)
    embed = loaded.model.get_input_embeddings()
    with torch.inference_mode():
        parts = [session.prefix_embeds[:, :first]]
        if llama_framing:  # the literal <sound> token llama.cpp puts before the embeddings
            parts.append(embed(torch.tensor([[loaded.audio_token_id]])))
        parts += [session.prefix_embeds[:, first:], embed(suffix)]
        embeds = torch.cat(parts, dim=1)
    return {"before": prefix[:first].tolist() + ([loaded.audio_token_id] if llama_framing else []),
            "after": prefix[first + int(audio.sum()):].tolist() + suffix[0].tolist(),
            "audio": int(audio.sum()), "top5": hf_first_token(loaded, embeds)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[30.0, 20.0])
    parser.add_argument("--hf", type=Path, default=None, help="checkpoint folder (default: the test stand-in)")
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from backends.flamingo_common import load_prompts
    from backends.flamingo_transformers import load
    from backends.llama_cpp import context_size, tool_path
    from backends.llama_server import LlamaServer

    torch.manual_seed(0)
    if args.hf is None:
        from tests.test_flamingo_hf import standin

        args.hf = standin("audioflamingo3")
    prompts = load_prompts()
    loaded = load(args.hf, dtype="float32")
    out: dict = {"checkpoint": str(args.hf), "durations": {}, "vocab": len(loaded.processor.tokenizer)}
    model, mmproj = gguf_of(Path(args.hf))
    server = LlamaServer(tool_path("llama-server"), model=model, mmproj=mmproj,
                         ctx_size=context_size(max(args.seconds), 8), gpu_layers=0)
    try:
        out["gguf_chat_template_default_system"] = "You are a helpful assistant." in server.post(
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
