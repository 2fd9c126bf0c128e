"""Music Flamingo through HF transformers: load a local checkpoint once, then answer questions about
one track's audio with the audio featurised and encoded once and the shared prefix cached.

Two checkpoint families, picked by the checkpoint's own ``config.json`` ``model_type``:
- ``audioflamingo3`` -> ``AudioFlamingo3ForConditionalGeneration`` (``nvidia/music-flamingo-hf``,
  the checkpoint the GGUF files come from);
- ``musicflamingo`` -> ``MusicFlamingoForConditionalGeneration`` (``nvidia/music-flamingo-2601-hf``,
  rotary time embeddings on the audio).

Prompt layout (both checkpoints ship the same processor template: one ``<sound>`` first in a user turn
that has audio, then all its text parts, whatever order the message lists them in; so the public
usage example, which lists the text before the audio, renders this same layout):

    [system + user turn start + <audio tokens>] [question + end of turn + assistant start] -> answer
     \\________ shared prefix: same for all five questions ______/

The prefix's key/value cache is computed once per track and cropped back to the prefix after each
question, so each question only evaluates its own few tokens. torch/transformers are imported inside
functions: this module is imported only by the worker.
"""
from __future__ import annotations

import gc
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.flamingo.prompts import Sampling  # noqa: F401 (re-exported for callers)
from backends.protocol import BackendError, BadInput, ModelMissing

ARCHITECTURES = {
    "audioflamingo3": "AudioFlamingo3ForConditionalGeneration",
    "musicflamingo": "MusicFlamingoForConditionalGeneration",
}
DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
ATTENTION = ("sdpa", "eager", "flash_attention_2")
SAMPLE_RATE = 16000


class OutOfMemoryInModel(Exception):
    """torch ran out of (GPU or host) memory inside the model; the caller names track and prompt."""


@dataclass
class Answer:
    text: str
    generated_tokens: int
    prompt_tokens: int
    """Tokens of the whole prompt (prefix + question) for this question."""
    prompt_tokens_evaluated: int
    """Prompt tokens run through the language model for this question (cached ones excluded)."""
    prompt_tokens_cached: int
    seconds: float
    first_token_seconds: float
    """From the start of the question to its first sampled token: prompt evaluation + one sample."""
    finish_reason: str
    """``stop`` (end-of-turn token) or ``length`` (hit ``max_tokens``)."""

    def provenance(self) -> dict[str, Any]:
        gen_s = self.seconds - self.first_token_seconds
        return {"prompt_tokens": self.prompt_tokens, "prompt_tokens_evaluated": self.prompt_tokens_evaluated,
                "prompt_tokens_cached": self.prompt_tokens_cached, "generated_tokens": self.generated_tokens,
                "seconds": round(self.seconds, 4), "first_token_s": round(self.first_token_seconds, 4),
                "tokens_per_s": round((self.generated_tokens - 1) / gen_s, 3)
                if self.generated_tokens > 1 and gen_s > 0 else None,
                "finish_reason": self.finish_reason}


def read_architecture(folder: Path) -> str:
    """The checkpoint family named by ``folder/config.json`` (``audioflamingo3`` or ``musicflamingo``)."""
    config = folder / "config.json"
    if not config.is_file():
        raise ModelMissing(f"{folder}: not a transformers checkpoint (no config.json)")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as exc:
        raise ModelMissing(f"{config}: unreadable checkpoint config: {exc}") from None
    if model_type not in ARCHITECTURES:
        raise BackendError(f"{config}: model_type {model_type!r} is not Music Flamingo "
                           f"(expected one of {', '.join(ARCHITECTURES)})")
    if not any(folder.glob("*.safetensors")) and not any(folder.glob("*.bin")):
        raise ModelMissing(f"{folder}: the checkpoint has a config but no weights (*.safetensors)")
    return model_type


@dataclass
class LoadedFlamingo:
    model: Any
    processor: Any
    folder: Path
    architecture: str
    dtype: str
    """``float32``, ``bfloat16`` or ``float16``."""
    attn_implementation: str
    device: str
    load_seconds: float
    eos_ids: tuple[int, ...]
    audio_token: str
    audio_token_id: int
    stats: dict[str, int] = field(default_factory=lambda: {"audio_featurisations": 0, "audio_encodes": 0,
                                                            "prefix_evaluations": 0})

    @property
    def label(self) -> str:
        """``music_flamingo_model``: back end, dtype, and the checkpoint family where it is not the GGUF one."""
        suffix = "" if self.architecture == "audioflamingo3" else "_2601"
        return f"transformers_{DTYPES[self.dtype]}{suffix}"


def load(folder: str | os.PathLike, *, dtype: str = "float32", attn_implementation: str = "sdpa",
         device: str | None = None) -> LoadedFlamingo:
    """Load checkpoint and processor from a local folder (never the network unless HF_HUB_OFFLINE=0)."""
    folder = Path(folder)
    if dtype not in DTYPES:
        raise BackendError(f"flamingo_hf: option dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if attn_implementation not in ATTENTION:
        raise BackendError(f"flamingo_hf: option attn_implementation must be one of {', '.join(ATTENTION)}, "
                           f"not {attn_implementation!r}")
    architecture = read_architecture(folder)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", os.environ["HF_HUB_OFFLINE"])
    began = time.perf_counter()
    import torch
    import transformers

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu" and dtype != "float32":
        # Half precision on CPU is slow and not what the profiles ask for; say so rather than guess.
        print(f"flamingo_hf: note: {dtype} on CPU", flush=True)
    try:
        processor = transformers.AutoProcessor.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise ModelMissing(f"{folder}: cannot load the processor (tokenizer, feature extractor, chat "
                           f"template): {exc}") from None
    model_class = getattr(transformers, ARCHITECTURES[architecture])
    try:
        model = model_class.from_pretrained(str(folder), dtype=getattr(torch, dtype),
                                            attn_implementation=attn_implementation)
    except ImportError as exc:  # flash_attention_2 without the flash-attn package
        raise BackendError(f"flamingo_hf: attn_implementation={attn_implementation!r} is not available here "
                           f"({exc}); install it or set [backend.flamingo_hf.options] "
                           f"attn_implementation = \"sdpa\" in the profile") from None
    model = model.to(device).eval()
    tokenizer = processor.tokenizer
    eos = {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
    if tokenizer.eos_token_id is not None:
        eos.add(tokenizer.eos_token_id)
    eos.discard(None)
    eos.discard(tokenizer.unk_token_id)
    return LoadedFlamingo(model=model, processor=processor, folder=folder, architecture=architecture,
                          dtype=dtype, attn_implementation=attn_implementation, device=device,
                          load_seconds=time.perf_counter() - began, eos_ids=tuple(sorted(eos)),
                          audio_token=processor.audio_token, audio_token_id=model.config.audio_token_id)


def render_prompt(loaded: LoadedFlamingo, question: str, system: str = "") -> tuple[str, str]:
    """The chat-template text of one question, split after the audio: (shared prefix, question part)."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": [{"type": "audio", "path": "track"},
                                                 {"type": "text", "text": question}]})
    text = loaded.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if isinstance(text, list):
        text = text[0]
    parts = text.split(loaded.audio_token)
    if len(parts) != 2:
        raise BackendError(f"{loaded.folder}: the chat template must place the audio token "
                           f"{loaded.audio_token!r} exactly once, found {len(parts) - 1}")
    if question not in parts[1]:
        # A template that writes the text where the message lists it (or before the audio) would
        # make the audio part of each question's own tokens: nothing left to share between questions.
        raise BackendError(f"{loaded.folder}: the chat template renders the question before the audio "
                           f"token {loaded.audio_token!r}; the shared prefix (system turn + audio) needs the "
                           f"audio first")
    return parts[0] + loaded.audio_token, parts[1]


class TrackSession:
    """One track's audio, featurised and encoded once, asked any number of questions."""

    def __init__(self, loaded: LoadedFlamingo, mono16k, *, system: str = "", label: str = "track",
                 reuse_prefix: bool = True):
        import numpy as np
        import torch

        self.loaded, self.label, self.reuse_prefix = loaded, label, reuse_prefix
        self.system = system
        samples = np.asarray(mono16k, dtype=np.float32)
        if samples.ndim != 1 or samples.size == 0:
            raise BadInput(f"{label}: no audio samples to describe")
        if not np.isfinite(samples).all():
            raise BadInput(f"{label}: the decoded audio contains NaN or infinite samples")
        processor = loaded.processor
        self.seconds_heard = min(samples.size / SAMPLE_RATE, float(processor.max_audio_len))
        self.truncated = samples.size / SAMPLE_RATE > processor.max_audio_len
        # Any question gives the same prefix; rendering one tells us what it is.
        self.prefix_text, _ = render_prompt(loaded, "?", system)
        with torch.inference_mode():
            features = processor(text=[self.prefix_text], audio=[samples], return_tensors="pt")
            loaded.stats["audio_featurisations"] += 1
            device = loaded.device
            self.prefix_ids = features["input_ids"].to(device)
            input_features = features["input_features"].to(device, loaded.model.dtype)
            features_mask = features["input_features_mask"].to(device)
            model = loaded.model
            if loaded.architecture == "musicflamingo":
                audio = model.get_audio_features(input_features, features_mask, input_ids=self.prefix_ids)
            else:
                audio = model.get_audio_features(input_features, features_mask)
            loaded.stats["audio_encodes"] += 1
            embeds = model.get_input_embeddings()(self.prefix_ids)
            slots = self.prefix_ids == loaded.audio_token_id
            audio_embeds = audio.pooler_output.to(embeds.dtype)
            if int(slots.sum()) != audio_embeds.shape[0]:
                raise BackendError(f"{label}: {int(slots.sum())} audio tokens but "
                                   f"{audio_embeds.shape[0]} audio embeddings")
            embeds[slots] = audio_embeds
            self.prefix_embeds = embeds
            self.audio_tokens = int(slots.sum())
            self.windows = int(input_features.shape[0])
        self.prefix_cache = None

    @property
    def prefix_tokens(self) -> int:
        return int(self.prefix_ids.shape[1])

    def _language_model(self):
        return self.loaded.model.model.language_model, self.loaded.model.lm_head

    def _new_cache(self):
        from transformers import DynamicCache

        return DynamicCache(config=self.loaded.model.config.text_config)

    def _prefix_cache(self):
        if self.prefix_cache is None:
            lm, _ = self._language_model()
            cache = self._new_cache()
            lm(inputs_embeds=self.prefix_embeds, cache=cache, use_cache=True)
            self.loaded.stats["prefix_evaluations"] += 1
            self.prefix_cache = cache
        return self.prefix_cache

    def question_ids(self, question: str):
        """Token ids of the question part; tokenised alone, which is exact because it follows a special token."""
        import torch

        prefix_text, suffix_text = render_prompt(self.loaded, question, self.system)
        if prefix_text != self.prefix_text:
            raise BackendError("the chat template's prefix depends on the question; prefix reuse impossible")
        ids = self.loaded.processor.tokenizer(suffix_text, add_special_tokens=False)["input_ids"]
        return torch.tensor([ids], dtype=torch.long, device=self.loaded.device)

    def _in_memory_guard(self, work):
        """``work()`` under inference mode; any out-of-memory (CUDA's, HIP's said only in the message,
        the host's) frees the session and becomes OutOfMemoryInModel."""
        import torch

        try:
            with torch.inference_mode():
                return work()
        except torch.OutOfMemoryError as exc:
            self.free()
            raise OutOfMemoryInModel(str(exc).splitlines()[0]) from None
        except RuntimeError as exc:
            if "out of memory" not in str(exc).lower():
                raise
            self.free()
            raise OutOfMemoryInModel(str(exc).splitlines()[0]) from None
        except MemoryError:
            self.free()
            raise OutOfMemoryInModel("host memory exhausted") from None

    def ask(self, question: str, sampling: Sampling) -> Answer:
        return self._in_memory_guard(lambda: self._ask(question, sampling))

    def _ask(self, question: str, sampling: Sampling) -> Answer:
        import torch

        lm, head = self._language_model()
        suffix = self.question_ids(question)
        began = time.perf_counter()
        if self.reuse_prefix:
            cache = self._prefix_cache()
            cached = self.prefix_tokens
            out = lm(input_ids=suffix, cache=cache, use_cache=True)
            evaluated = suffix.shape[1]
        else:
            cache = self._new_cache()
            embeds = torch.cat([self.prefix_embeds, lm.get_input_embeddings()(suffix)], dim=1)
            out = lm(inputs_embeds=embeds, cache=cache, use_cache=True)
            self.loaded.stats["prefix_evaluations"] += 1
            cached, evaluated = 0, embeds.shape[1]
        try:
            history = self.text_ids() + suffix[0].tolist()
            tokens, first_token_s, finish = self._decode(lm, head, cache, out.last_hidden_state[:, -1:], sampling,
                                                         began, history)
        finally:
            if self.reuse_prefix:  # back to the shared prefix for the next question
                extra = cache.get_seq_length() - self.prefix_tokens
                if extra > 0:
                    cache.crop(-extra)
        seconds = _synced_elapsed(self.loaded.device, began)
        text = self.loaded.processor.tokenizer.decode(tokens, skip_special_tokens=True)
        return Answer(text=text, generated_tokens=len(tokens) + (finish == "stop"),
                      prompt_tokens=self.prefix_tokens + suffix.shape[1], prompt_tokens_evaluated=int(evaluated),
                      prompt_tokens_cached=int(cached), seconds=seconds, first_token_seconds=first_token_s,
                      finish_reason=finish)

    def ask_batch(self, questions: list[tuple[str, Sampling]]) -> list[Answer]:
        """All questions decoded together, one batch over the shared prefix (see ``ask_tracks``)."""
        return self._in_memory_guard(lambda: _ask_tracks([self], questions)[0])

    def text_ids(self) -> list[int]:
        """The prefix's text token ids, audio positions left out (llama.cpp has no token there either)."""
        ids = self.prefix_ids[0]
        return ids[ids != self.loaded.audio_token_id].tolist()

    def _decode(self, lm, head, cache, hidden, sampling: Sampling, began: float, history: list[int]):
        """Sample up to ``max_tokens``; returns (text tokens, seconds to the first token, finish reason).

        ``history``: the prompt's text tokens, which the repeat penalty looks back over with the answer.
        """
        import torch

        pick = _sampler(sampling, self.loaded.device)
        tokens: list[int] = []
        first_token_s = 0.0
        for step in range(sampling.max_tokens):
            logits = head(hidden)[:, -1, :].float()
            token = pick(logits, history + tokens)
            if step == 0:
                first_token_s = _synced_elapsed(self.loaded.device, began)
            if token in self.loaded.eos_ids:
                return tokens, first_token_s, "stop"
            tokens.append(token)
            if step + 1 == sampling.max_tokens:
                break
            nxt = torch.tensor([[token]], dtype=torch.long, device=self.loaded.device)
            hidden = lm(input_ids=nxt, cache=cache, use_cache=True).last_hidden_state
        return tokens, first_token_s, "length"

    def free(self) -> None:
        """Drop this track's tensors and caches, and hand cached GPU memory back to the driver."""
        self.prefix_cache = None
        self.prefix_embeds = None
        release_memory()


def ask_tracks(sessions: list[TrackSession], questions: list[tuple[str, Sampling]]) -> list[list[Answer]]:
    """The same questions about several tracks, all decoded as one batch: each track's answers, in
    order. Under the out-of-memory guard: any out-of-memory frees every session and raises
    OutOfMemoryInModel."""
    import torch

    try:
        with torch.inference_mode():
            return _ask_tracks(sessions, questions)
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not isinstance(exc, torch.OutOfMemoryError) \
                and "out of memory" not in str(exc).lower():
            raise
        for session in sessions:
            session.free()
        raise OutOfMemoryInModel(str(exc).splitlines()[0] if str(exc) else "host memory exhausted") from None


def _joined_cache(sessions: list[TrackSession], rows: int, width: int):
    """One key/value cache of ``rows`` rows per track over the tracks' prefixes, each left-padded to
    the longest (the padding is masked out of attention). One track: its own cache, repeated."""
    import torch

    caches = [s._prefix_cache() for s in sessions]
    for s in sessions:
        s.prefix_cache = None  # the batch takes the caches over; the tracks are done after it
    if len(sessions) == 1:
        if rows > 1:
            caches[0].batch_repeat_interleave(rows)
        return caches[0]
    joined = sessions[0]._new_cache()
    for index, layer in enumerate(joined.layers):
        keys, values = [], []
        for cache, session in zip(caches, sessions):
            short = width - session.prefix_tokens
            for stack, tensor in ((keys, cache.layers[index].keys), (values, cache.layers[index].values)):
                padded = torch.nn.functional.pad(tensor, (0, 0, short, 0)) if short else tensor
                stack.append(padded.expand(rows, -1, -1, -1))
        layer.update(torch.cat(keys, dim=0).contiguous(), torch.cat(values, dim=0).contiguous())
        for cache in caches:  # free each track's own copy as soon as it is joined
            cache.layers[index].keys = cache.layers[index].values = None
    return joined


def _ask_tracks(sessions: list[TrackSession], questions: list[tuple[str, Sampling]]) -> list[list[Answer]]:
    """One row per (track, question): every track's prefix key/value cache (computed once per
    track) is repeated once per question. Prefixes of different lengths are padded on their left
    and the questions, of different lengths too, between the prefix and the question, so every
    row's last input is a real token and every row's answer starts in the same column.

    Padding is masked out of attention and skipped by the positions (each row's question starts at
    its own track's ``prefix_tokens``), so each row sees exactly what the sequential path shows it.
    A row leaves the batch at its own end token or token limit; the cache keeps only the rows
    still writing. Sampling: one generator per row, seeded with the question's seed, as the
    sequential path seeds one per question, so the same seed gives the same draws.
    """
    import torch

    if not questions or not sessions:
        return [[] for _ in sessions]
    loaded = sessions[0].loaded
    lm, head = sessions[0]._language_model()
    device = loaded.device
    per_track = len(questions)
    # Row r: track r // per_track, question r % per_track.
    suffixes = [s.question_ids(text)[0] for s in sessions for text, _ in questions]
    samplings = [sampling for _ in sessions for _, sampling in questions]
    prefixes = [s.prefix_tokens for s in sessions for _ in questions]
    lengths = [int(x.shape[0]) for x in suffixes]
    rows, width, prefix_width = len(suffixes), max(lengths), max(prefixes)
    pad = loaded.processor.tokenizer.pad_token_id or 0
    began = time.perf_counter()
    cache = _joined_cache(sessions, per_track, prefix_width)
    ids = torch.full((rows, width), pad, dtype=torch.long, device=device)
    mask = torch.ones((rows, prefix_width + width), dtype=torch.long, device=device)
    positions = torch.zeros((rows, width), dtype=torch.long, device=device)
    for row, (suffix, length, prefix) in enumerate(zip(suffixes, lengths, prefixes)):
        ids[row, width - length:] = suffix
        mask[row, :prefix_width - prefix] = 0
        mask[row, prefix_width:prefix_width + width - length] = 0
        positions[row, :] = prefix
        positions[row, width - length:] = torch.arange(prefix, prefix + length, device=device)
    hidden = lm(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                use_cache=True).last_hidden_state[:, -1:]
    picks = [_sampler(sampling, device) for sampling in samplings]
    texts = [s.text_ids() for s in sessions]
    histories = [texts[row // per_track] + suffix.tolist() for row, suffix in enumerate(suffixes)]
    tokens: list[list[int]] = [[] for _ in range(rows)]
    finish: list[str] = ["length"] * rows
    first_s: list[float] = [0.0] * rows
    seconds: list[float] = [0.0] * rows
    active = list(range(rows))  # row index of each row still in the batch
    step = 0
    while active:
        logits = head(hidden)[:, -1, :].float()
        keep, nxt = [], []
        for slot, q in enumerate(active):
            token = picks[q](logits[slot:slot + 1], histories[q] + tokens[q])
            if step == 0:
                first_s[q] = _synced_elapsed(device, began)
            limit = samplings[q].max_tokens
            if token in loaded.eos_ids:
                finish[q] = "stop"
            else:
                tokens[q].append(token)
            if finish[q] == "stop" or len(tokens[q]) >= limit:
                seconds[q] = _synced_elapsed(device, began)
                continue
            keep.append(slot)
            nxt.append(token)
        step += 1
        if not keep:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, dtype=torch.long, device=device)
            cache.batch_select_indices(index)
            mask = mask[index]
            active = [active[k] for k in keep]
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
        step_positions = torch.tensor([[prefixes[q] + lengths[q] + len(tokens[q]) - 1] for q in active],
                                      dtype=torch.long, device=device)
        hidden = lm(input_ids=torch.tensor([[t] for t in nxt], dtype=torch.long, device=device),
                    attention_mask=mask, position_ids=step_positions, cache=cache,
                    use_cache=True).last_hidden_state
    del cache
    tokenizer = loaded.processor.tokenizer
    answers = [Answer(text=tokenizer.decode(tokens[q], skip_special_tokens=True),
                      generated_tokens=len(tokens[q]) + (finish[q] == "stop"),
                      prompt_tokens=prefixes[q] + lengths[q], prompt_tokens_evaluated=lengths[q],
                      prompt_tokens_cached=prefixes[q], seconds=seconds[q], first_token_seconds=first_s[q],
                      finish_reason=finish[q])
               for q in range(rows)]
    return [answers[t * per_track:(t + 1) * per_track] for t in range(len(sessions))]


def release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _synced_elapsed(device: str, began: float) -> float:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
    return time.perf_counter() - began


def _sampler(sampling: Sampling, device: str):
    """Token picker in llama.cpp's chain as mirdeck sets it (``SAMPLER_ORDER``): repeat penalty over the
    last ``repeat_last_n`` text tokens, then temperature (0 = argmax), top-k, top-p, min-p, seeded draw.
    """
    import torch
    from transformers.generation.logits_process import (
        LogitsProcessorList,
        MinPLogitsWarper,
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    penalty = (RepetitionPenaltyLogitsProcessor(sampling.repeat_penalty)
               if sampling.repeat_penalty != 1.0 else None)

    def penalised(logits, history):
        if penalty is None or not history:
            return logits
        recent = torch.tensor([history[-sampling.repeat_last_n:]], dtype=torch.long, device=logits.device)
        return penalty(recent, logits)

    if sampling.temperature == 0:
        return lambda logits, history=(): int(torch.argmax(penalised(logits, list(history)), dim=-1)[0])
    warpers = LogitsProcessorList([TemperatureLogitsWarper(sampling.temperature)])
    if sampling.top_k > 0:
        warpers.append(TopKLogitsWarper(sampling.top_k))
    if sampling.top_p < 1.0:
        warpers.append(TopPLogitsWarper(sampling.top_p))
    if sampling.min_p > 0:
        warpers.append(MinPLogitsWarper(sampling.min_p))
    # One generator per question, seeded the same: a question's answer does not depend on the order.
    generator = torch.Generator(device=device).manual_seed(sampling.seed)

    def pick(logits, history=()):
        scores = warpers(None, penalised(logits, list(history)))
        probs = torch.softmax(scores, dim=-1)
        return int(torch.multinomial(probs, 1, generator=generator)[0, 0])

    return pick
