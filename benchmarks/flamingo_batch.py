"""Five questions vs one question per track, both Music Flamingo back ends, on a CPU-sized stand-in
big enough that the language model's compute dominates (not the tiny test model).

    python -m benchmarks.flamingo_batch [--tokens 32] [--seconds 30] [--threads 2] [--only hf|gguf]
    python -m benchmarks.flamingo_batch --tracks 2 [...]   # N tracks in one call vs one after another

The stand-in: the real architecture (AudioFlamingo3: Whisper-style encoder, projector, Qwen2 decoder)
with the real Qwen2 vocabulary, random weights, a decoder of 6 layers x 1024 wide (16 heads, 2
key-value heads, as Qwen2.5-7B's 28 / 4) and its 151,672-word output layer: ~0.38 B parameters,
so each decoded token reads ~1.5 GB (transformers, fp32) or ~0.4 GB (llama.cpp, Q8_0) of weights,
which is what makes batch-1 decoding bandwidth-bound on the real model too. Built once into the
cache (``~/.cache/mirdeck/standins/bench-batch-*``), GGUF through llama.cpp's own converter.

Per back end and track: one question alone, the five questions one after another, and the five
as one batch (transformers: one batch over the shared prefix; llama.cpp: five parallel slots). Every
question writes exactly ``--tokens`` tokens (the end token is ignored), temperature 0. The wall time
of a track includes featurising and encoding the audio and the prefix; the model load and one
untimed warm-up track per back end are excluded.
The table prints five-batched / one (the issue's target: <= 1.5) and whether the batched texts
equal the sequential ones. llama.cpp runs with the module's flash attention setting (off, in every
mode: the same text in one slot or five); one question at llama.cpp's default (auto) is timed too,
what "one" cost before the module made the setting the same everywhere. Then, per llama-server
request, its own ``timings`` (prompt tokens evaluated and cached, prompt and generation ms) beside
the client's wall clock per phase (warm-up, slot copy, the questions), and the load average.

``--tracks N`` (N > 1) measures batching across tracks instead: N tracks (different clips of the
same length) with their five questions each, one track after another (each track's five questions
as one batch, as ``tracks_per_call = 1``) vs all N in one call (``tracks_per_call = N``:
transformers, 5 x N rows of one batch; llama.cpp, 5 x N slots with every track in flight). The
wall time covers featurising/encoding every track's audio and all the decoding. ``--repeat R``:
each way R times, taking turns; the fastest wall time counts, and CPU seconds (with llama-server's)
are printed beside it, since wall time on a shared machine swings far more than CPU time.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEXT = {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 6, "num_attention_heads": 16,
        "num_key_value_heads": 2}
AUDIO = {"hidden_size": 256, "intermediate_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 4}
QUESTIONS = ("Describe this track in full.", "What is the tempo and the key?", "Genre and mood?",
             "Which instruments play?", "Describe the structure of the track, section by section.")


def build_standin(out: Path) -> Path:
    """The HF folder of the benchmark stand-in (reused when complete)."""
    if (out / "bench-standin.json").is_file():
        return out
    import torch
    from transformers import (
        AudioFlamingo3Config,
        AudioFlamingo3ForConditionalGeneration,
        AudioFlamingo3Processor,
        AutoTokenizer,
        WhisperFeatureExtractor,
    )

    from tests.support import flamingo_standin
    from tests.support.flamingo_hf_standin import PROCESSOR_TEMPLATE

    tok = flamingo_standin._tokenizer(flamingo_standin.llama_source())
    config = AudioFlamingo3Config(
        audio_config={"num_mel_bins": 128, "max_source_positions": 1500, **AUDIO},
        text_config={"model_type": "qwen2", "vocab_size": len(tok), **TEXT, "max_position_embeddings": 32768,
                     "rope_theta": 1e6, "tie_word_embeddings": False,
                     "eos_token_id": tok.convert_tokens_to_ids("<|im_end|>")},
        audio_token_id=tok.convert_tokens_to_ids("<sound>"))
    config.architectures = ["AudioFlamingo3ForConditionalGeneration"]
    torch.manual_seed(0)
    model = AudioFlamingo3ForConditionalGeneration(config).eval()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    AudioFlamingo3Processor(WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, chunk_length=30,
                                                    return_attention_mask=True),
                            tokenizer, chat_template=PROCESSOR_TEMPLATE).save_pretrained(out)
    (out / "bench-standin.json").write_text(json.dumps({"text": TEXT, "audio": AUDIO,
                                                        "parameters": sum(p.numel() for p in model.parameters())}))
    return out


def gguf_of(hf: Path) -> tuple[Path, Path]:
    """The stand-in converted by llama.cpp's converter: the language model in Q8_0 (the real file's
    type), the projector in f16 (as the published mmproj)."""
    from tests.support.flamingo_standin import llama_source

    model, mmproj = hf / "bench.Q8_0.gguf", hf / "bench.mmproj-f16.gguf"
    source = llama_source()
    env = {**os.environ, "PYTHONPATH": str(source / "gguf-py")}
    for extra, target, kind in (([], model, "q8_0"), (["--mmproj"], mmproj, "f16")):
        if target.is_file():
            continue
        done = subprocess.run([sys.executable, str(source / "convert_hf_to_gguf.py"), str(hf), "--outfile",
                               str(target), "--outtype", kind, *extra], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"convert failed: {done.stderr[-3000:]}")
    return model, mmproj


def music(seconds: float):
    import numpy as np

    t = np.arange(int(seconds * 16000)) / 16000
    chord = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    return (0.2 * chord * (0.5 + 0.5 * (np.sin(2 * np.pi * 2 * t) > 0))).astype(np.float32)


def bench_hf(folder: Path, pcm, tokens: int, threads: int) -> dict:
    import torch

    from backends.flamingo.hf import Sampling, TrackSession, load

    torch.set_num_threads(threads)
    loaded = load(folder)
    loaded.eos_ids = ()  # fixed token counts: every question writes exactly `tokens`
    greedy = Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=tokens)
    questions = [(q, greedy) for q in QUESTIONS]
    warm = TrackSession(loaded, pcm[: 16000 * 5])  # untimed: first-call allocations and page-ins
    warm.ask_batch([(q, Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=2)) for q in QUESTIONS])
    out = {}
    for way in ("one", "five sequential", "five batched"):
        began = time.perf_counter()
        session = TrackSession(loaded, pcm)
        if way == "one":
            answers = [session.ask(QUESTIONS[0], greedy)]
        elif way == "five sequential":
            answers = [session.ask(q, s) for q, s in questions]
        else:
            answers = session.ask_batch(questions)
        out[way] = {"seconds": time.perf_counter() - began, "texts": [a.text for a in answers],
                    "tokens": sum(a.generated_tokens for a in answers)}
        session.free()
    return out


def bench_gguf(model: Path, mmproj: Path, pcm, tokens: int, threads: int) -> dict:
    import soundfile

    from backends.flamingo.llama_cli import Sampling, context_size, tool_path
    from backends.flamingo.llama_server import LlamaServer

    buf = io.BytesIO()
    soundfile.write(buf, pcm, 16000, format="WAV", subtype="FLOAT")
    wav = buf.getvalue()
    greedy = Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=tokens)
    ctx = context_size(len(pcm) / 16000, tokens)
    out = {}
    from backends.extractors.flamingo_gguf import PARALLEL_FLASH_ATTN

    def server(parallel: int, flash: str | None) -> LlamaServer:
        return LlamaServer(tool_path("llama-server"), model=model, mmproj=mmproj, ctx_size=ctx, gpu_layers=0,
                           threads=threads, parallel=parallel, flash_attn=flash)

    # The module's flash attention choice for one slot and for five (the same: the same text), and
    # one slot at llama.cpp's own default (auto: on here), what one question cost before that choice.
    servers = {1: server(1, PARALLEL_FLASH_ATTN), 5: server(5, PARALLEL_FLASH_ATTN), "auto": server(1, None)}
    for srv in servers.values():
        srv.ask = timed(srv.ask, srv)
    try:
        for srv in servers.values():  # untimed: first-call allocations and page-ins of each server
            srv.ask_all([(q, Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=2)) for q in QUESTIONS],
                        audio_wav=wav, audio_label="warm-up")
        for way, srv, questions in (("one", servers[1], QUESTIONS[:1]), ("five sequential", servers[1], QUESTIONS),
                                    ("five batched", servers[5], QUESTIONS),
                                    ("one, FA auto", servers["auto"], QUESTIONS[:1])):
            # A fresh clip per way (one sample changed): nothing of it is in the server's cache yet.
            clip = bytearray(wav)
            clip[-4:] = bytes([len(out) + 1, 0, 0, 0])  # (the warm-up used the unchanged clip)
            srv.walls = []
            began = time.perf_counter()
            answers, batching = srv.ask_all([(q, greedy) for q in questions], audio_wav=bytes(clip),
                                            audio_label="bench", ignore_eos=True)
            out[way] = {"seconds": time.perf_counter() - began, "texts": [a.text for a in answers],
                        "tokens": sum(a.generated_tokens for a in answers),
                        "timings": [{"prompt_n": a.prompt_tokens, "cache_n": a.cached_tokens,
                                     "prompt_ms": a.prompt_ms, "predicted_n": a.generated_tokens,
                                     "predicted_ms": a.generate_ms} for a in answers],
                        "batching": batching, "walls": srv.walls}
    finally:
        for srv in servers.values():
            srv.close()
    return out


def clips(pcm, count: int) -> list:
    """``count`` different clips of the same length: the music shifted by a few samples and scaled."""
    import numpy as np

    return [(np.roll(pcm, 97 * i) * (1.0 - 0.1 * i)).astype(np.float32) for i in range(count)]


def bench_hf_tracks(folder: Path, pcms: list, tokens: int, threads: int, repeat: int) -> dict:
    import torch

    from backends.flamingo.hf import Sampling, TrackSession, ask_tracks, load

    torch.set_num_threads(threads)
    loaded = load(folder)
    loaded.eos_ids = ()
    greedy = Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=tokens)
    questions = [(q, greedy) for q in QUESTIONS]
    short = [(q, Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=2)) for q in QUESTIONS]
    ask_tracks([TrackSession(loaded, p[: 16000 * 5]) for p in pcms], short)  # untimed warm-up

    def series():
        return [[a.text for a in TrackSession(loaded, p).ask_batch(questions)] for p in pcms]

    def together():
        return [[a.text for a in t] for t in ask_tracks([TrackSession(loaded, p) for p in pcms], questions)]

    return _alternate({"one after another": series, "in one call": together}, repeat)


def _alternate(ways: dict, repeat: int) -> dict:
    """Each way ``repeat`` times, taking turns, so a burst of load on the shared machine hits both
    alike; every wall time is kept and the fastest is the figure. CPU seconds (this process and its
    children, llama-server included) too: on a machine shared with other work they swing far less
    than wall time."""
    from backends.process_cpu import tree_cpu_seconds

    out: dict = {way: {"runs": [], "cpu": [], "texts": None} for way in ways}
    for _ in range(repeat):
        for way, work in ways.items():
            began, cpu = time.perf_counter(), tree_cpu_seconds()
            texts = work()
            out[way]["runs"].append(time.perf_counter() - began)
            out[way]["cpu"].append(tree_cpu_seconds() - cpu)
            out[way]["texts"] = texts
    for record in out.values():
        record["seconds"] = min(record["runs"])
        record["cpu_seconds"] = min(record["cpu"])
    return out


def bench_gguf_tracks(model: Path, mmproj: Path, pcms: list, tokens: int, threads: int, repeat: int) -> dict:
    import soundfile

    from backends.flamingo.llama_cli import Sampling, context_size, tool_path
    from backends.flamingo.llama_server import LlamaServer

    tags = iter(range(1, 250))

    def wav(pcm) -> bytes:
        buf = io.BytesIO()
        soundfile.write(buf, pcm, 16000, format="WAV", subtype="FLOAT")
        data = bytearray(buf.getvalue())
        data[-4:] = bytes([next(tags), 0, 0, 0])  # a clip of its own every time: nothing of it in the cache
        return bytes(data)

    n = len(pcms)
    greedy = Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=tokens)
    short = [(q, Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=2)) for q in QUESTIONS]
    ctx = context_size(len(pcms[0]) / 16000, tokens)
    servers = {slots: LlamaServer(tool_path("llama-server"), model=model, mmproj=mmproj, ctx_size=ctx, gpu_layers=0,
                                  threads=threads, parallel=slots, flash_attn="off") for slots in (5, 5 * n)}
    try:
        for slots, srv in servers.items():  # untimed: first-call allocations and page-ins
            srv.ask_tracks([(short, wav(p), "warm-up") for p in pcms[:slots // 5]], slots_per_track=5)

        def clips():
            return [([(q, greedy) for q in QUESTIONS], wav(p), f"track {i}") for i, p in enumerate(pcms)]

        def series():
            return [[a.text for a in servers[5].ask_all(q, audio_wav=w, audio_label=label, ignore_eos=True)[0]]
                    for q, w, label in clips()]

        def together():
            replies = servers[5 * n].ask_tracks(clips(), slots_per_track=5, ignore_eos=True)
            texts = []
            for r in replies:
                if isinstance(r, BaseException):
                    raise r
                texts.append([a.text for a in r[0]])
            return texts

        return _alternate({"one after another": series, "in one call": together}, repeat)
    finally:
        for srv in servers.values():
            srv.close()
def timed(ask, srv):
    """``srv.ask`` that also notes each request's (start, end) on the client's clock in ``srv.walls``."""
    def ask_timed(**kwargs):
        began = time.perf_counter()
        try:
            return ask(**kwargs)
        finally:
            srv.walls.append((kwargs.get("sampling").max_tokens, began, time.perf_counter()))
    srv.walls = []
    return ask_timed


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=32, help="tokens every question writes")
    ap.add_argument("--seconds", type=float, default=30.0, help="audio per track")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", choices=("hf", "gguf"))
    ap.add_argument("--tracks", type=int, default=1,
                    help="N > 1: N tracks in one call vs one after another (instead of five vs one)")
    ap.add_argument("--repeat", type=int, default=2,
                    help="with --tracks: each way this many times, taking turns; the fastest counts")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tui import paths

    subprocess.run([str(ROOT / "bin" / "build-llama"), "--variant", "cpu"], check=True, capture_output=True)
    folder = build_standin(paths.cache_dir() / "standins" / "bench-batch-v1")
    params = json.loads((folder / "bench-standin.json").read_text())["parameters"]
    pcm = music(args.seconds)
    if args.tracks > 1:
        return tracks_table(args, folder, params, pcm)
    results = {}
    if args.only != "gguf":
        results["transformers (fp32)"] = bench_hf(folder, pcm, args.tokens, args.threads)
    if args.only != "hf":
        model, mmproj = gguf_of(folder)
        results["llama.cpp (Q8_0)"] = bench_gguf(model, mmproj, pcm, args.tokens, args.threads)
    print(f"\nFive questions vs one per track: stand-in of {params / 1e9:.2f} B parameters (decoder 6 x 1024, "
          f"151,672 words), {args.seconds:g} s of audio, {args.tokens} tokens per question, temperature 0, "
          f"{args.threads} CPU threads")
    print(f"{'back end':<20} {'one s':>7} {'five in series s':>16} {'five batched s':>14} {'series/one':>10} "
          f"{'batched/one':>11} {'batched = series text':>21}")
    for name, r in results.items():
        one, series, batched = (r[k]["seconds"] for k in ("one", "five sequential", "five batched"))
        same = r["five batched"]["texts"] == r["five sequential"]["texts"]
        print(f"{name:<20} {one:>7.2f} {series:>16.2f} {batched:>14.2f} {series / one:>10.2f} "
              f"{batched / one:>11.2f} {str(same):>21}")
    if "llama.cpp (Q8_0)" in results:
        r = results["llama.cpp (Q8_0)"]
        auto = r["one, FA auto"]["seconds"]
        print(f"llama.cpp one question at llama.cpp's default flash attention (auto): {auto:.2f} s; five batched / "
              f"that: {r['five batched']['seconds'] / auto:.2f}; its text = the module's one-question text: "
              f"{r['one, FA auto']['texts'] == r['one']['texts']}")
        print_llama_breakdown(r)
    print(f"load average (1, 5, 15 min) at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def tracks_table(args, folder: Path, params: int, pcm) -> int:
    pcms = clips(pcm, args.tracks)
    results = {}
    if args.only != "gguf":
        results["transformers (fp32)"] = bench_hf_tracks(folder, pcms, args.tokens, args.threads, args.repeat)
    if args.only != "hf":
        model, mmproj = gguf_of(folder)
        results["llama.cpp (Q8_0)"] = bench_gguf_tracks(model, mmproj, pcms, args.tokens, args.threads, args.repeat)
    print(f"\n{args.tracks} tracks in one call vs one after another: stand-in of {params / 1e9:.2f} B parameters "
          f"(decoder 6 x 1024, 151,672 words), {args.seconds:g} s of audio per track, five questions of "
          f"{args.tokens} tokens each, temperature 0, {args.threads} CPU threads; fastest of {args.repeat} "
          "runs taking turns (all runs in brackets)")
    print(f"{'back end':<20} {'one after another s':>28} {'in one call s':>28} {'call/series':>11} "
          f"{'CPU s series':>12} {'CPU s call':>10} {'CPU call/series':>15} {'same text':>9}")
    for name, r in results.items():
        series, call = r["one after another"]["seconds"], r["in one call"]["seconds"]
        same = r["one after another"]["texts"] == r["in one call"]["texts"]
        runs = [f"{r[way]['seconds']:.2f} (" + " ".join(f"{x:.1f}" for x in r[way]["runs"]) + ")"
                for way in ("one after another", "in one call")]
        cpu_runs = {way: [round(x, 1) for x in r[way]["cpu"]] for way in ("one after another", "in one call")}
        cpu_series, cpu_call = r["one after another"]["cpu_seconds"], r["in one call"]["cpu_seconds"]
        print(f"{name:<20} {runs[0]:>28} {runs[1]:>28} {call / series:>11.2f} "
              f"{cpu_series:>12.1f} {cpu_call:>10.1f} {cpu_call / cpu_series:>15.2f} {str(same):>9}")
        print(f"{'':<20} CPU seconds of every run: {cpu_runs}")
    return 0
def print_llama_breakdown(r: dict) -> None:
    """Where llama.cpp's time goes, from llama-server's own ``timings`` per request (prompt_n: prompt
    tokens evaluated, cache_n: taken from the slot's cache, prompt_ms: their evaluation with the
    audio encode, predicted_ms: the generated tokens) and the client's wall clock per phase."""
    print("\nllama.cpp per request (server timings; ms):")
    print(f"{'way':<16} {'request':<9} {'prompt_n':>8} {'cache_n':>7} {'prompt_ms':>9} {'predicted_n':>11} "
          f"{'predicted_ms':>12} {'tok/s':>6}")
    for way in ("one", "five sequential", "five batched", "one, FA auto"):
        entry = r[way]
        batching = entry.get("batching") or {}
        walls = entry["walls"]
        if batching:
            warm = batching["warmup"]
            _, w0, w1 = walls[0]  # the warm-up is the first request, alone
            print(f"{way[:16]:<16} {'warm-up':<9} {warm['prompt_tokens']:>8} {warm['cached_tokens']:>7} "
                  f"{warm['prompt_eval_ms']:>9.0f} {1:>11} {'':>12} {'':>6}   wall {(w1 - w0) * 1000:.0f}")
            print(f"{way[:16]:<16} {'slot copy':<9} {'':>8} {'':>7} {'':>9} {'':>11} {'':>12} {'':>6}   wall "
                  f"{batching['slot_copy_ms']:.0f} ({batching['slot_file_bytes'] / 1e6:.1f} MB slot file)")
            walls = walls[1:]
        for i, t in enumerate(entry["timings"]):
            rate = t["predicted_n"] / (t["predicted_ms"] / 1000) if t["predicted_ms"] else 0.0
            print(f"{way[:16]:<16} {'q' + str(i + 1):<9} {t['prompt_n']:>8} {t['cache_n']:>7} {t['prompt_ms']:>9.0f} "
                  f"{t['predicted_n']:>11} {t['predicted_ms']:>12.0f} {rate:>6.1f}")
        if batching:  # from the first question sent to the last answered
            span = max(end for _, _, end in walls) - min(start for _, start, _ in walls)
            print(f"{way[:16]:<16} {'questions':<9} {'':>8} {'':>7} {'':>9} {'':>11} {'':>12} {'':>6}   wall "
                  f"{span * 1000:.0f}")
        print(f"{way[:16]:<16} {'total':<9} wall {entry['seconds'] * 1000:.0f}")


if __name__ == "__main__":
    sys.exit(main())
