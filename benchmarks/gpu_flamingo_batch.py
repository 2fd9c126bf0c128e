"""Real-size numbers without real weights, for a lent GPU: Music Flamingo's decoder at batch 1 and 5,
the whole five-question track in series and as one batch, AudioBox's WavLM Base, and the GPU probe.

    python -m benchmarks.gpu_flamingo_batch --json $OUT/gpu.json          # on the GPU (bf16), ~5 min
    python -m benchmarks.gpu_flamingo_batch --tiny --device cpu --dtype float32 --seconds 40 \\
        --token-scale 0.02 --wavlm small                                   # a check of the script on a CPU

Speed does not depend on the weights' values, so the models are built from their published
configurations with random weights, directly on the device in the chosen dtype (nothing is
downloaded): Music Flamingo = AudioFlamingo3 with a Qwen2.5-7B decoder (28 layers, 3584 wide,
28 / 4 heads, 18944 feed-forward, 151672 words) and a Whisper-large-v3-style encoder (32 layers, 1280
wide, 20 heads, 128 mel bins, 750 tokens per 30 s window) (``benchmarks/gpu_flamingo_hf.py`` builds
it); AudioBox = WavLM Base (12 x 768) with its four heads (``tests/support/audiobox_standin.py``).

Measured, each through mirdeck's own code paths (``TrackSession``, ``audiobox.model.score``):
- encoder ms per 30 s window; prefill tokens/s (the ~11,250-token prefix of a 7.5-minute track);
- decode tokens/s at batch 1 (one question) and batch 5 (five questions, one batch);
- seconds per 7.5-minute track for the five questions with the prompts file's token counts
  (500/200/150/100/300, the end token disabled so every answer is full length), in series and as one
  batch, and the peak GPU memory of each;
- WavLM Base windows (10 s) per second at micro-batch 16, bf16 autocast;
- what the dashboard's GPU panel reads (``tui.gpu``: NVML on NVIDIA) while this process holds the
  model: device used/total and this process's own memory.

The llama.cpp side is not here: it needs a CUDA build of llama-server (bin/build-llama --variant cuda).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXED = {"full": 500, "technical": 200, "genre_mood": 150, "instrumentation": 100, "structure": 300}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _peak_reset(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str):
    if device.startswith("cuda"):
        import torch

        return round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return None


def flamingo(args) -> dict:
    import torch

    from backends.flamingo.hf import Sampling, TrackSession
    from backends.flamingo.prompts import load_prompts
    from benchmarks.gpu_flamingo_hf import REAL, TINY, build, track

    device = args.device
    loaded, params = build(TINY if args.tiny else REAL, args.dtype, device)
    loaded.eos_ids = ()  # fixed token counts: the end token never stops an answer
    prompts = load_prompts()
    limits = {name: max(2, round(n * args.token_scale)) for name, n in FIXED.items()}
    questions = [(p.text, Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=limits[p.name]))
                 for p in prompts.prompts]
    out: dict = {"parameters": params, "dtype": args.dtype, "device": device,
                 "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else None,
                 "track_seconds": args.seconds, "limits": limits}
    print(f"Music Flamingo: {params / 1e9:.2f} B parameters, {args.dtype}, built in {loaded.load_seconds:.1f} s "
          f"on {out['gpu'] or device}; track {args.seconds:g} s; token limits {list(limits.values())}", flush=True)
    pcm = track(args.seconds)

    # Encoder and prefill, timed apart (TrackSession does both in one go).
    with torch.inference_mode():
        session = TrackSession(loaded, pcm)  # warms the kernels up
        session.free()
        features = loaded.processor(text=[session.prefix_text], audio=[pcm], return_tensors="pt")
        feats = features["input_features"].to(device, loaded.model.dtype)
        mask = features["input_features_mask"].to(device)
        _sync(device)
        began = time.perf_counter()
        loaded.model.get_audio_features(feats, mask)
        _sync(device)
        encode_s = time.perf_counter() - began
        session = TrackSession(loaded, pcm)
        _sync(device)
        began = time.perf_counter()
        session._prefix_cache()
        _sync(device)
        prefill_s = time.perf_counter() - began
    windows = int(feats.shape[0])
    out["encoder_ms_per_window"] = round(1000 * encode_s / windows, 1)
    out["audio_windows"] = windows
    out["prefix_tokens"] = session.prefix_tokens
    out["prefill_tokens_per_s"] = round(session.prefix_tokens / prefill_s, 1)
    print(f"  encoder {out['encoder_ms_per_window']} ms per 30 s window ({windows} windows); prefill "
          f"{session.prefix_tokens} tokens at {out['prefill_tokens_per_s']} tokens/s", flush=True)

    # Decode speed at batch 1 and 5 (the cached prefix, same question length budget).
    n = max(limits.values())
    one = session.ask(questions[0][0], Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=n))
    out["decode_tokens_per_s_batch1"] = one.provenance()["tokens_per_s"]
    five = session.ask_batch([(q, Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=n)) for q, _ in questions])
    decode_s = max(a.seconds for a in five) - max(a.first_token_seconds for a in five)
    out["decode_tokens_per_s_batch5"] = round(sum(a.generated_tokens - 1 for a in five) / decode_s, 2)
    session.free()
    print(f"  decode: batch 1 {out['decode_tokens_per_s_batch1']} tokens/s, batch 5 "
          f"{out['decode_tokens_per_s_batch5']} tokens/s in all ({n} tokens each)", flush=True)

    # The whole track, five questions, in series and as one batch.
    for way in ("in series", "one batch"):
        _peak_reset(device)
        began = time.perf_counter()
        session = TrackSession(loaded, pcm)
        answers = ([session.ask(q, s) for q, s in questions] if way == "in series" else session.ask_batch(questions))
        _sync(device)
        seconds = time.perf_counter() - began
        session.free()
        tag = way.replace(" ", "_")
        out[f"track_seconds_{tag}"] = round(seconds, 2)
        out[f"peak_gib_{tag}"] = _peak_gib(device)
        out[f"texts_{tag}"] = [a.text for a in answers]
        print(f"  five questions {way}: {seconds:.1f} s per track, {sum(a.generated_tokens for a in answers)} "
              f"tokens, peak {out[f'peak_gib_{tag}']} GiB", flush=True)
    out["batch_equals_series"] = out.pop("texts_one_batch") == out.pop("texts_in_series")
    out["gpu_probe"] = probe_reading()
    del loaded
    return out


def probe_reading() -> dict:
    """What the dashboard's GPU panel is given: the probe's snapshot for this process."""
    from tui.gpu import open_probe

    probe = open_probe()
    try:
        snap = probe.read([os.getpid()])
    finally:
        probe.close()
    return {"source": snap.source, "note": snap.note,
            "devices": [{"name": d.name, "vram_used_gib": _gib(d.vram_used), "vram_total_gib": _gib(d.vram_total),
                         "busy_percent": d.busy_percent} for d in snap.devices],
            "this_process_vram_gib": _gib(snap.processes[os.getpid()].vram) if os.getpid() in snap.processes else None}


def _gib(value):
    return round(value / 2**30, 2) if value is not None else None


def wavlm(args) -> dict:
    import numpy as np
    import torch

    from backends.extractors.audiobox.model import ChannelsFirst, load_scorer, score
    from tests.support.audiobox_standin import write_checkpoint

    with tempfile.TemporaryDirectory(prefix="mirdeck-gpu-wavlm-") as tmp:
        scorer = load_scorer(write_checkpoint(Path(tmp) / "checkpoint.pt", args.wavlm), args.device)
    seconds = args.wavlm_seconds
    wav = (0.1 * np.random.default_rng(0).standard_normal((1, int(seconds * 16000)))).astype(np.float32)
    item = ChannelsFirst(wav, label="synthetic")
    bf16 = args.device.startswith("cuda")
    score(scorer, [ChannelsFirst(wav[:, :160000])], micro_batch=16, bf16=bf16)  # warm-up
    _peak_reset(args.device)
    _sync(args.device)
    began = time.perf_counter()
    score(scorer, [item], micro_batch=16, bf16=bf16)
    _sync(args.device)
    elapsed = time.perf_counter() - began
    windows = math.ceil(seconds / 10)
    out = {"size": args.wavlm, "parameters": scorer.parameters, "audio_seconds": seconds, "windows": windows,
           "windows_per_s": round(windows / elapsed, 2), "realtime_factor": round(seconds / elapsed, 1),
           "micro_batch": 16, "bf16": bf16, "peak_gib": _peak_gib(args.device)}
    print(f"WavLM ({args.wavlm}, {scorer.parameters / 1e6:.1f} M parameters): {out['windows_per_s']} windows/s "
          f"({out['realtime_factor']}x realtime), peak {out['peak_gib']} GiB", flush=True)
    del scorer
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny Flamingo sizes (a check of the script)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--seconds", type=float, default=450.0, help="track length (7.5 minutes)")
    parser.add_argument("--token-scale", type=float, default=1.0, help="x the fixed token counts (CPU check)")
    parser.add_argument("--wavlm", default="real", choices=["real", "small"])
    parser.add_argument("--wavlm-seconds", type=float, default=450.0)
    parser.add_argument("--json", help="also write every number here")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    results = {"flamingo": flamingo(args), "wavlm": wavlm(args)}
    f = results["flamingo"]
    print()
    print(f"{'measure':<44} {'value':>12}")
    for label, value in (("encoder ms per 30 s window", f["encoder_ms_per_window"]),
                         ("prefill tokens/s", f["prefill_tokens_per_s"]),
                         ("decode tokens/s, batch 1", f["decode_tokens_per_s_batch1"]),
                         ("decode tokens/s, batch 5 (all rows)", f["decode_tokens_per_s_batch5"]),
                         ("s per track, five questions in series", f["track_seconds_in_series"]),
                         ("s per track, five questions as one batch", f["track_seconds_one_batch"]),
                         ("peak GiB, in series", f["peak_gib_in_series"]),
                         ("peak GiB, one batch", f["peak_gib_one_batch"]),
                         ("batch texts = series texts", f["batch_equals_series"]),
                         ("WavLM windows/s", results["wavlm"]["windows_per_s"]),
                         ("GPU probe: this process GiB", f["gpu_probe"]["this_process_vram_gib"])):
        print(f"{label:<44} {str(value):>12}")
    print(f"GPU probe: {json.dumps(f['gpu_probe'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
