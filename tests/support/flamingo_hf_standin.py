"""Tiny random-weight stand-ins of both Music Flamingo checkpoints, saved as transformers folders.

- ``audioflamingo3``: the GGUF back end's stand-in (``tests/flamingo_standin.build_hf``: the real
  architecture, tiny, with the real Qwen2 vocabulary) plus the processor the real checkpoint ships
  (Whisper feature extractor with 128 mel bins, 30 s windows, and the checkpoint's own chat template,
  which puts the audio before the question).
- ``musicflamingo``: ``MusicFlamingoForConditionalGeneration`` with the same tiny sizes and
  vocabulary plus the ``<|sound_bos|>`` / ``<|sound_eos|>`` tokens it wraps the audio in.

Both are loaded by the back end with ``from_pretrained``, the path real weights take. Their words
mean nothing; they prove the plumbing.
"""
from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path

from backends.flamingo.prompts import PROMPT_NAMES
from tests.support.flamingo_standin import TEMPLATES
from tui import paths

# The real checkpoints' processor template (both Music Flamingo checkpoints ship the same one; see
# tests/support/chat_templates/README.md): the default system turn the tokenizer template of
# tests/support/flamingo_standin.py renders too, then one <sound> placeholder first in a user turn that
# has audio, then its text parts joined without a separator, whatever their order in the message.
PROCESSOR_TEMPLATE = (TEMPLATES / "music_flamingo_processor.jinja").read_text(encoding="utf-8")
ARCHITECTURES = ("audioflamingo3", "musicflamingo")


def _feature_extractor():
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, chunk_length=30,
                                   return_attention_mask=True)


def _audioflamingo3(out: Path, behaviour: str, seed: int) -> None:
    from transformers import AudioFlamingo3Processor, AutoTokenizer

    from tests.support.flamingo_standin import build_hf

    build_hf(out, behaviour, seed)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    AudioFlamingo3Processor(_feature_extractor(), tokenizer, chat_template=PROCESSOR_TEMPLATE).save_pretrained(out)


def _musicflamingo(out: Path, behaviour: str, seed: int) -> None:
    import torch
    from transformers import MusicFlamingoConfig, MusicFlamingoForConditionalGeneration, MusicFlamingoProcessor

    from tests.support import flamingo_standin as gguf_standin

    # A copy: the GGUF helper caches its tokenizer per process, and this one gets two more tokens.
    tokenizer = copy.deepcopy(gguf_standin._tokenizer(gguf_standin.llama_source()))
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|sound_bos|>", "<|sound_eos|>"]},
                                 replace_extra_special_tokens=False)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<sound>", "<|sound_bos|>", "<|sound_eos|>", "<|im_end|>")}
    config = MusicFlamingoConfig(
        audio_config={"model_type": "audioflamingo3_encoder", "num_mel_bins": 128, "num_hidden_layers": 3,
                      "num_attention_heads": 2, "hidden_size": 32, "intermediate_size": 64,
                      "max_source_positions": 1500},
        text_config={"model_type": "qwen2", "vocab_size": len(tokenizer), "hidden_size": gguf_standin.HIDDEN,
                     "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 2, "max_position_embeddings": 32768, "rope_theta": 1e6,
                     "tie_word_embeddings": False, "eos_token_id": ids["<|im_end|>"]},
        audio_token_id=ids["<sound>"], audio_bos_token_id=ids["<|sound_bos|>"],
        audio_eos_token_id=ids["<|sound_eos|>"])
    config.architectures = ["MusicFlamingoForConditionalGeneration"]
    torch.manual_seed(seed)
    model = MusicFlamingoForConditionalGeneration(config).eval()
    if behaviour != "random":
        gguf_standin._script(model, tokenizer, behaviour)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    MusicFlamingoProcessor(_feature_extractor(), tokenizer, chat_template=PROCESSOR_TEMPLATE).save_pretrained(out)


def build(out: Path, architecture: str = "audioflamingo3", behaviour: str = "random", seed: int = 0) -> Path:
    """A stand-in checkpoint folder in ``out`` (reused when already complete)."""
    out = Path(out)
    stamp = out / "standin-hf.json"
    if stamp.is_file():
        return out
    if architecture == "audioflamingo3":
        _audioflamingo3(out, behaviour, seed)
    elif architecture == "musicflamingo":
        _musicflamingo(out, behaviour, seed)
    else:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}")
    stamp.write_text(json.dumps({"architecture": architecture, "behaviour": behaviour, "seed": seed}))
    return out


if __name__ == "__main__":
    print(build(Path(sys.argv[1]), *sys.argv[2:]))


LIMITS = {"full": 7, "technical": 5, "genre_mood": 4, "instrumentation": 3, "structure": 6}


def standin(architecture: str, behaviour: str = "random") -> Path:
    """Built once per machine (the build takes minutes here) and reused by later runs; keyed by the
    builders' and templates' own bytes, so an edit to any of them builds a fresh one."""
    from tests.support.flamingo_standin import source_digest

    digest = hashlib.sha256(Path(__file__).read_bytes() + source_digest().encode()).hexdigest()[:12]
    return build(paths.cache_dir() / "standins" / f"hf-{architecture}-{behaviour}-{digest}", architecture, behaviour)


def small_prompts(path: Path, *, temperature: float = 0.0) -> Path:
    """A prompts file with the shared format and tiny token limits (a stand-in's words are noise)."""
    lines = ['version = "test-small-1"', "", "[sampling]", f"temperature = {temperature}", "top_k = 40",
             "top_p = 0.9", "min_p = 0.05", "repeat_penalty = 1.0", "repeat_last_n = 64", "seed = 7", ""]
    for name in PROMPT_NAMES:
        lines += [f"[prompt.{name}]", f"max_tokens = {LIMITS[name]}", f'text = "Question about {name}?"', ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
