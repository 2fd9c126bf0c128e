"""Music Flamingo at its real size on a GPU, random weights, nothing downloaded: five prompts on a
7.5-minute synthetic track through flamingo_hf's own code (TrackSession), full token counts forced.

    python -m benchmarks.gpu_flamingo_hf                 # real sizes, bf16, on the GPU
    python -m benchmarks.gpu_flamingo_hf --tiny --device cpu --dtype float32 --seconds 40   # a check

Real sizes: the language model is Qwen2.5-7B (28 layers, 3584 wide, 28 heads / 4 key-value heads,
18944 feed-forward, 151672 words); the audio encoder is Whisper-large-v3-like (32 layers, 1280 wide,
20 heads, 128 mel bins, 30 s windows of 750 tokens). The weights are built on the device in the chosen
dtype (never on the CPU first). The tokenizer is a byte-level one built here (no vocabulary file): the
questions come out longer in tokens than with Qwen2's, a few hundred tokens next to 11250 audio tokens.

Prints tokens/s, time to first token and peak memory per question and for the track, with the
prefix (system + audio) reused and, for comparison, recomputed for every question.
"""
from __future__ import annotations

import argparse
import json
import os
import time

REAL = {"text": {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                 "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 151672},
        "audio": {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32,
                  "num_attention_heads": 20}}
TINY = {"text": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1024},
        "audio": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 2}}
TEMPLATE = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' }}"
            "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
            "{% for p in m['content'] if p['type'] == 'audio' %}{{ '<sound>' }}{% endfor %}"
            "{% for p in m['content'] if p['type'] == 'text' %}{{ p['text'] }}{% endfor %}{% endif %}"
            "{{ '<|im_end|>\\n' }}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<sound>")


def byte_tokenizer():
    """A real byte-level BPE tokenizer without merges: every byte is a token, plus the chat specials."""
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    vocab = {ch: i for i, ch in enumerate(bytes_to_unicode().values())}
    tok = Qwen2Tokenizer(vocab=vocab, merges=[], unk_token=None, bos_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": list(SPECIALS)})
    return tok


def build(sizes: dict, dtype: str, device: str):
    import torch
    from transformers import (
        AudioFlamingo3Config,
        AudioFlamingo3ForConditionalGeneration,
        AudioFlamingo3Processor,
        WhisperFeatureExtractor,
    )

    from backends.flamingo.hf import LoadedFlamingo

    tok = byte_tokenizer()
    vocab = max(sizes["text"]["vocab_size"], len(tok))
    config = AudioFlamingo3Config(
        audio_config={"num_mel_bins": 128, "max_source_positions": 1500, **sizes["audio"]},
        text_config={"model_type": "qwen2", **sizes["text"], "vocab_size": vocab, "rope_theta": 1e6,
                     "max_position_embeddings": 32768, "tie_word_embeddings": False},
        audio_token_id=tok.convert_tokens_to_ids("<sound>"))
    began = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(getattr(torch, dtype))
        try:
            model = AudioFlamingo3ForConditionalGeneration._from_config(config, attn_implementation="sdpa",
                                                                        dtype=getattr(torch, dtype)).eval()
        finally:
            torch.set_default_dtype(previous)
    processor = AudioFlamingo3Processor(WhisperFeatureExtractor(feature_size=128, return_attention_mask=True), tok,
                                        chat_template=TEMPLATE)
    loaded = LoadedFlamingo(model=model, processor=processor, folder=None, architecture="audioflamingo3",
                            dtype=dtype, attn_implementation="sdpa", device=device,
                            load_seconds=time.perf_counter() - began, eos_ids=(), audio_token="<sound>",
                            audio_token_id=config.audio_token_id)
    return loaded, sum(p.numel() for p in model.parameters())


def track(seconds: float):
    import numpy as np

    t = np.arange(int(seconds * 16000)) / 16000
    # A chord with a beat: something that is not silence for the encoder (it cannot tell anyway).
    mix = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) * (0.5 + 0.5 * (np.sin(2 * np.pi * 2 * t) > 0))
    return (0.2 * mix).astype(np.float32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (a quick check of the script)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--seconds", type=float, default=450.0)
    parser.add_argument("--no-recompute", action="store_true", help="skip the prefix-recomputed comparison")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from backends.flamingo.hf import TrackSession
    from backends.flamingo.prompts import load_prompts

    cuda = args.device.startswith("cuda")
    loaded, params = build(TINY if args.tiny else REAL, args.dtype, args.device)
    prompts = load_prompts()
    print(f"model: {params / 1e9:.2f} B parameters, {args.dtype}, built in {loaded.load_seconds:.1f} s on "
          f"{torch.cuda.get_device_name() if cuda else args.device}; track {args.seconds:g} s; "
          f"limits {[p.max_tokens for p in prompts.prompts]} (prompts {prompts.version})", flush=True)
    if cuda:
        print(f"memory after load: {torch.cuda.memory_allocated() / 2**30:.2f} GiB", flush=True)
    pcm = track(args.seconds)
    results = {}
    for reuse in (True,) if args.no_recompute else (True, False):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        began = time.perf_counter()
        session = TrackSession(loaded, pcm, reuse_prefix=reuse)
        encode_s = time.perf_counter() - began
        rows = []
        for prompt in prompts.prompts:
            sampling = prompts.sampling(prompt)
            answer = session.ask(prompt.text, sampling)
            rows.append({"prompt": prompt.name, **answer.provenance()})
            print(f"  {'reuse' if reuse else 'recompute'} {prompt.name:<16} {answer.generated_tokens:4d} tokens "
                  f"{answer.seconds:8.2f} s  first token {answer.first_token_seconds:6.2f} s  "
                  f"{answer.provenance()['tokens_per_s']} tokens/s  evaluated {answer.prompt_tokens_evaluated}",
                  flush=True)
        total = time.perf_counter() - began
        session.free()
        peak = torch.cuda.max_memory_allocated() if cuda else None
        tokens = sum(r["generated_tokens"] for r in rows)
        results["prefix reused" if reuse else "prefix recomputed"] = {
            "track_seconds": round(total, 2), "audio_featurise_encode_s": round(encode_s, 2),
            "audio_tokens": session.audio_tokens, "prefix_tokens": session.prefix_tokens,
            "generated_tokens": tokens, "tokens_per_s_overall": round(tokens / total, 2),
            "peak_memory_gib": round(peak / 2**30, 2) if peak is not None else None, "questions": rows}
    print()
    print(f"{'way':<18} {'s/track':>8} {'encode s':>9} {'tokens':>7} {'tok/s':>7} {'TTFT mean':>10} {'peak GiB':>9}")
    for way, r in results.items():
        ttft = sum(q["first_token_s"] for q in r["questions"]) / len(r["questions"])
        peak = r["peak_memory_gib"] if r["peak_memory_gib"] is not None else "n/a"
        print(f"{way:<18} {r['track_seconds']:8.1f} {r['audio_featurise_encode_s']:9.2f} {r['generated_tokens']:7d} "
              f"{r['tokens_per_s_overall']:7.2f} {ttft:10.3f} {peak:>9}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"params": params, "dtype": args.dtype, "seconds": args.seconds, "results": results},
                      fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
