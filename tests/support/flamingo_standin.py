"""A tiny random-weight Music Flamingo stand-in, converted to GGUF with llama.cpp's own converter.

The architecture is the real one (transformers' ``AudioFlamingo3ForConditionalGeneration``: a Whisper-
style audio encoder, the projector and a Qwen2 language model), only tiny; the tokenizer is the real
Qwen2 vocabulary from llama.cpp's ``models/ggml-vocab-qwen2.gguf``. It goes through the same
``convert_hf_to_gguf.py`` (model and ``--mmproj``) and the same built binaries real weights use.
A stand-in proves the plumbing; its words mean nothing.

Variants (``behaviour``):
- ``random``: plain random weights.
- ``scripted``: the language model's output distribution is made constant (a large constant vector
  is added to the residual stream, see ``_script``) over a few words, a newline, a curly apostrophe
  and the end-of-turn token, so sampled answers contain line breaks, typographic quotes, and stop
  early by themselves.
- ``silent``: the end-of-turn token always wins, so every answer is empty.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

from tui.paths import ROOT

# The real checkpoint's tokenizer template (transformers' Music Flamingo converter writes it; the GGUF
# converter copies it into the GGUF, where llama.cpp renders it): ChatML with a default system turn, the
# Music Flamingo system prompt, when the conversation has none. tests/support/chat_templates/README.md
# says where it comes from.
TEMPLATES = ROOT / "tests" / "support" / "chat_templates"
CHAT_TEMPLATE = (TEMPLATES / "music_flamingo_tokenizer.jinja").read_text(encoding="utf-8")
DEFAULT_SYSTEM = CHAT_TEMPLATE.split("<|im_start|>system\\n", 1)[1].split("<|im_end|>", 1)[0]


def source_digest() -> str:
    """Of this builder and the templates it reads: caches of converted stand-ins are keyed by it."""
    import hashlib

    digest = hashlib.sha256(Path(__file__).read_bytes())
    for template in sorted(TEMPLATES.glob("*.jinja")):
        digest.update(template.read_bytes())
    return digest.hexdigest()[:12]


SCRIPT_WORDS = (" warm", " bass", " drums", "’s")
HIDDEN = 64


@functools.cache
def llama_source() -> Path:
    """The pinned llama.cpp source tree (fetched and extracted by the build script when needed)."""
    root = ROOT
    out = subprocess.run([str(root / "bin" / "build-llama"), "--source-only"], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return Path(out.stdout.strip().splitlines()[-1])


@functools.cache
def _tokenizer(source: Path):
    sys.path.insert(0, str(source / "gguf-py"))
    import gguf
    from transformers import Qwen2Tokenizer

    reader = gguf.GGUFReader(str(source / "models" / "ggml-vocab-qwen2.gguf"))

    def strings(key):
        field = reader.fields[key]
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]

    tokens, merges = strings("tokenizer.ggml.tokens"), strings("tokenizer.ggml.merges")
    types = list(reader.fields["tokenizer.ggml.token_type"].parts[-1])
    vocab = {tok: i for i, tok in enumerate(tokens)}
    merges = [tuple(m.split(" ", 1)) for m in merges]
    special = [t for t, kind in zip(tokens, types) if kind == 3]  # 3 = control token
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, bos_token=None,
                         eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": special + ["<sound>"]})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_hf(out: Path, behaviour: str = "random", seed: int = 0) -> Path:
    import torch
    from transformers import AudioFlamingo3Config, AudioFlamingo3ForConditionalGeneration

    tok = _tokenizer(llama_source())
    vocab_size = len(tok)
    config = AudioFlamingo3Config(
        # Fewer than 3 encoder layers and the converter fails on audio_tower.conv2.bias.
        audio_config={"num_mel_bins": 128, "num_hidden_layers": 3, "num_attention_heads": 2,
                      "hidden_size": 32, "intermediate_size": 64, "max_source_positions": 1500},
        text_config={"model_type": "qwen2", "vocab_size": vocab_size, "hidden_size": HIDDEN,
                     "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "max_position_embeddings": 32768, "rope_theta": 1e6,
                     "tie_word_embeddings": False, "eos_token_id": tok.convert_tokens_to_ids("<|im_end|>")},
        audio_token_id=tok.convert_tokens_to_ids("<sound>"))
    config.architectures = ["AudioFlamingo3ForConditionalGeneration"]
    torch.manual_seed(seed)
    model = AudioFlamingo3ForConditionalGeneration(config).eval()
    if behaviour != "random":
        _script(model, tok, behaviour)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "standin.json").write_text(json.dumps({"behaviour": behaviour, "seed": seed}))
    return out


def _script(model, tok, behaviour: str) -> None:
    """Make the next-token distribution constant: v bias through o_proj adds ``BIG * e0`` to the residual."""
    import torch

    lm = model.language_model if hasattr(model, "language_model") else model.model.language_model
    layer = lm.layers[0] if hasattr(lm, "layers") else lm.model.layers[0]
    attn = layer.self_attn
    big = 1000.0
    with torch.no_grad():
        attn.v_proj.weight.zero_()
        attn.v_proj.bias.fill_(1.0)
        # Every head reads the same all-ones value, so o_proj sees a ones vector: map it to BIG * e0.
        attn.o_proj.weight.zero_()
        attn.o_proj.weight[0, :] = big / attn.o_proj.weight.shape[1]
        head = model.lm_head if hasattr(model, "lm_head") else model.language_model.lm_head
        head.weight.zero_()
        # After the final RMSNorm the hidden state is ~ sqrt(HIDDEN) * e0, so logit = row[0] * sqrt(HIDDEN).
        scale = HIDDEN ** 0.5

        def logit(token_text: str, value: float):
            ids = tok.encode(token_text, add_special_tokens=False)
            assert len(ids) == 1, (token_text, ids)
            head.weight[ids[0], 0] = value / scale

        end = tok.convert_tokens_to_ids("<|im_end|>")
        if behaviour == "silent":
            head.weight[end, 0] = 20.0 / scale
        elif behaviour == "scripted":
            for word in SCRIPT_WORDS:
                logit(word, 20.0)
            logit("\n", 19.5)
            head.weight[end, 0] = 19.0 / scale
        else:
            raise ValueError(behaviour)


def convert(hf_dir: Path, out_dir: Path, name: str) -> tuple[Path, Path]:
    """Run the source tree's convert_hf_to_gguf.py twice: the language model, then ``--mmproj``."""
    source = llama_source()
    out_dir.mkdir(parents=True, exist_ok=True)
    model, mmproj = out_dir / f"{name}.gguf", out_dir / f"{name}.mmproj.gguf"
    env = {**os.environ, "PYTHONPATH": str(source / "gguf-py")}
    for extra, target in (([], model), (["--mmproj"], mmproj)):
        cmd = [sys.executable, str(source / "convert_hf_to_gguf.py"), str(hf_dir), "--outfile", str(target),
               "--outtype", "f32", *extra]
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise RuntimeError(f"convert failed: {done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return model, mmproj


def build(out_dir: Path, behaviour: str = "random", seed: int = 0) -> tuple[Path, Path]:
    """HF stand-in + GGUF conversion, reused when already built in ``out_dir``."""
    model, mmproj = out_dir / f"standin-{behaviour}.gguf", out_dir / f"standin-{behaviour}.mmproj.gguf"
    if model.is_file() and mmproj.is_file():
        return model, mmproj
    hf = build_hf(out_dir / f"hf-{behaviour}", behaviour, seed)
    return convert(hf, out_dir, f"standin-{behaviour}")


if __name__ == "__main__":
    for b in sys.argv[2:] or ["random"]:
        print(build(Path(sys.argv[1]), b))
