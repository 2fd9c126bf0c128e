"""Where the two Music Flamingo back ends part, measured on one checkpoint: the text token ids
around the audio, the number of audio positions and the first token's top-5, from llama-server
(``gguf_side``) and from transformers as mirdeck runs it or with llama.cpp's framing
(``hf_side``). Used by tests/flamingo/test_framing.py and ``python -m benchmarks.flamingo_framing``.
"""
from __future__ import annotations

import io
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
    from backends.flamingo.llama_server import chat_messages

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
    from tests.support import flamingo_standin

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

    from backends.flamingo.hf import TrackSession
    from backends.flamingo.llama_cli import audio_windows

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
