"""What a llama-server request about a clip costs outside the server's own timings, by clip length:
the clip sent as base64 in the request against named by a ``file://`` URL in the server's media
folder (what the module does), with the clip's prompt already cached, one token asked.

    python -m benchmarks.flamingo_request_overhead [--seconds 30,450] [--repeat 3]

That time is the request read, the audio decoded, hashed and turned into a mel spectrogram
(mirdeck's llama.cpp patch reuses the spectrogram of a clip asked about before), the template and
the tokenizing: paid by each of a track's six requests (warm-up and five questions). The stand-in
of ``benchmarks.flamingo_batch``; the first request of each length (the audio encoded, minutes at
450 s on 2 cores) is not counted. ``MIRDECK_LLAMA_BIN_DIR`` runs other binaries (an unpatched build).
"""
from __future__ import annotations

import argparse
import io
import json
import time
import urllib.request


def outside_ms(srv, audio, question: str = "Genre?") -> float:
    from backends.flamingo.llama_server import chat_messages

    body = {"messages": chat_messages(audio, question), "max_tokens": 1, "temperature": 0.0, "cache_prompt": True}
    began = time.perf_counter()
    request = urllib.request.Request(srv._url("/v1/chat/completions"), data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=3600) as resp:
        timings = json.loads(resp.read())["timings"]
    return (time.perf_counter() - began) * 1000 - timings["prompt_ms"] - timings["predicted_ms"]


def main(argv=None) -> int:
    import soundfile

    from backends.flamingo.llama_cli import context_size, tool_path
    from backends.flamingo.llama_server import LlamaServer
    from benchmarks.flamingo_batch import build_standin, gguf_of, music
    from tui import paths

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", default="30,450", help="clip lengths, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    model, mmproj = gguf_of(build_standin(paths.cache_dir() / "standins" / "bench-batch-v1"))
    rows = []
    for seconds in (float(s) for s in args.seconds.split(",")):
        buf = io.BytesIO()
        soundfile.write(buf, music(seconds), 16000, format="WAV", subtype="FLOAT")
        wav = buf.getvalue()
        srv = LlamaServer(tool_path("llama-server"), model=model, mmproj=mmproj, ctx_size=context_size(seconds, 8),
                          gpu_layers=0, threads=args.threads)
        try:
            with srv.clip_file(wav) as url:
                outside_ms(srv, url)  # encodes the audio: the prompt every later request finds cached
                base64 = [outside_ms(srv, wav) for _ in range(args.repeat)]
                named = [outside_ms(srv, url) for _ in range(args.repeat)]
        finally:
            srv.close()
        rows.append((seconds, len(wav) / 1e6, min(base64), min(named)))
    print(f"\nPer request, outside llama-server's own timings (fastest of {args.repeat}; ms), clip prompt cached, "
          f"{args.threads} threads, llama.cpp at {tool_path('llama-server')}")
    print(f"{'clip s':>7} {'WAV MB':>7} {'base64 in the request':>22} {'file:// URL':>12}")
    for seconds, mb, b, n in rows:
        print(f"{seconds:7.0f} {mb:7.1f} {b:22.0f} {n:12.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
