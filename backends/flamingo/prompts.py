"""What both Music Flamingo back ends share: the prompts file, sampling settings and text normalisation.

The GGUF back end (llama.cpp) and the transformers back end read the same prompts file and
normalise their answers the same way, so their outputs can be compared key by key.
Stdlib only.
"""
from __future__ import annotations

import hashlib
import os
import tomllib
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from backends import ROOT
from backends.protocol import BackendError

PROMPT_NAMES = ("full", "technical", "genre_mood", "instrumentation", "structure")
KEY_PREFIX = "music_flamingo_"
FEATURE_KEYS = tuple(KEY_PREFIX + name for name in PROMPT_NAMES)
MODEL_KEY = KEY_PREFIX + "model"
DEFAULT_PROMPTS = ROOT / "models" / "flamingo_prompts.toml"
PROMPTS_ENV = "MIRDECK_FLAMINGO_PROMPTS"


class PromptsError(BackendError):
    """The prompts file is missing or malformed (a configuration problem, not the track's)."""


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str
    max_tokens: int


# Every sampler setting both back ends take from the prompts file's [sampling] table. All are
# required: a key left out would let llama.cpp (top-k 40, min-p 0.05, top-p 0.95) or transformers
# (no truncation) fill in its own default, and the two back ends would sample differently.
SAMPLING_KEYS = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "repeat_last_n", "seed")
# The one sampler order both back ends use: transformers' own (penalty, temperature, top-k, top-p,
# min-p), passed to llama.cpp explicitly because its default order applies temperature last.
SAMPLER_ORDER = ("penalties", "temperature", "top_k", "top_p", "min_p")


@dataclass(frozen=True)
class Sampling:
    """One question's decoding settings, the same for both back ends.

    ``temperature`` >= 0 (0 = greedy: the penalty still applies, then argmax); ``top_k`` >= 0 (0 = off);
    ``top_p`` in (0, 1] (1 = off); ``min_p`` in [0, 1) (0 = off); ``repeat_penalty`` > 0 (1 = off) over
    the last ``repeat_last_n`` text tokens (prompt text and answer; audio positions are not tokens);
    ``seed`` >= 0; ``max_tokens`` >= 1. The defaults here mean "off", never a library's default.
    """

    temperature: float
    top_p: float
    seed: int
    max_tokens: int
    top_k: int = 0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64


@dataclass(frozen=True)
class PromptSet:
    """The prompts of one file, in ``PROMPT_NAMES`` order, and the sampling they are run with."""

    version: str
    path: str
    sha256: str
    """Hash of the file's bytes: tells apart two edits that forgot to change ``version``."""
    prompts: tuple[Prompt, ...]
    temperature: float
    """Sampling temperature, >= 0; 0 means greedy decoding."""
    top_p: float
    """Nucleus sampling mass, in (0, 1]."""
    seed: int
    top_k: int = 0
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    system: str = ""

    def sampling(self, prompt: Prompt) -> Sampling:
        """The decoding settings of one question: this file's [sampling] and the question's token limit."""
        return Sampling(temperature=self.temperature, top_p=self.top_p, seed=self.seed,
                        max_tokens=prompt.max_tokens, top_k=self.top_k, min_p=self.min_p,
                        repeat_penalty=self.repeat_penalty, repeat_last_n=self.repeat_last_n)

    def sampling_provenance(self) -> dict:
        return {**{k: getattr(self, k) for k in SAMPLING_KEYS}, "sampler_order": list(SAMPLER_ORDER)}

    def provenance(self) -> dict:
        return {"prompt_version": self.version, "prompts_file": self.path, "prompts_sha256": self.sha256,
                **self.sampling_provenance()}


def prompts_path(options: dict | None = None) -> Path:
    """The prompts file of this run: option ``prompts_file``, else ``$MIRDECK_FLAMINGO_PROMPTS``, else the default."""
    chosen = (options or {}).get("prompts_file") or os.environ.get(PROMPTS_ENV)
    return Path(chosen) if chosen else DEFAULT_PROMPTS


def load_prompts(path: str | os.PathLike | None = None, *, overrides: dict | None = None) -> PromptSet:
    """Read and check a prompts file; ``overrides`` may set any ``SAMPLING_KEYS`` value for one run."""
    path = Path(path) if path else DEFAULT_PROMPTS
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise PromptsError(f"{path}: cannot read the Music Flamingo prompts file: {exc.strerror}") from None
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise PromptsError(f"{path}: not a valid TOML prompts file: {exc}") from None

    def fail(what: str):
        raise PromptsError(f"{path}: {what}")

    version = raw.get("version")
    if not isinstance(version, str) or not version.strip():
        fail("needs a non-empty string `version` (it is recorded with every result)")
    table = raw.get("prompt")
    if not isinstance(table, dict):
        fail("needs [prompt.<name>] tables for " + ", ".join(PROMPT_NAMES))
    unknown = sorted(set(table) - set(PROMPT_NAMES))
    missing = [n for n in PROMPT_NAMES if n not in table]
    if unknown or missing:
        fail(f"prompt names must be exactly {', '.join(PROMPT_NAMES)}"
             + (f"; unknown: {', '.join(unknown)}" if unknown else "")
             + (f"; missing: {', '.join(missing)}" if missing else ""))
    prompts = []
    for name in PROMPT_NAMES:
        entry = table[name]
        text, limit = entry.get("text"), entry.get("max_tokens")
        if not isinstance(text, str) or not text.strip():
            fail(f"[prompt.{name}] needs a non-empty `text`")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 8192:
            fail(f"[prompt.{name}] `max_tokens` must be an integer from 1 to 8192, not {limit!r}")
        prompts.append(Prompt(name=name, text=text.strip(), max_tokens=limit))

    sampling = {**raw.get("sampling", {}), **{k: v for k, v in (overrides or {}).items() if v is not None}}
    missing = [k for k in SAMPLING_KEYS if k not in sampling]
    if missing:
        fail(f"[sampling] must set every sampler setting explicitly (so neither back end falls back to "
             f"its own defaults); missing: {', '.join(missing)}")
    unknown = sorted(set(raw.get("sampling", {})) - set(SAMPLING_KEYS))
    if unknown:
        fail(f"[sampling] has unknown keys {', '.join(unknown)}; known: {', '.join(SAMPLING_KEYS)}")

    def number(key: str, ok, rule: str, *, integer: bool = False):
        value = sampling[key]
        kinds = (int,) if integer else (int, float)
        if not isinstance(value, kinds) or isinstance(value, bool) or not ok(value):
            fail(f"[sampling] `{key}` must be {rule}, not {value!r}")
        return value if integer else float(value)

    temperature = number("temperature", lambda v: v >= 0, "a number >= 0")
    top_p = number("top_p", lambda v: 0 < v <= 1, "a number in (0, 1]")
    top_k = number("top_k", lambda v: v >= 0, "an integer >= 0 (0 = off)", integer=True)
    min_p = number("min_p", lambda v: 0 <= v < 1, "a number in [0, 1) (0 = off)")
    repeat_penalty = number("repeat_penalty", lambda v: v > 0, "a number > 0 (1 = off)")
    repeat_last_n = number("repeat_last_n", lambda v: v >= 1, "an integer >= 1", integer=True)
    seed = number("seed", lambda v: v >= 0, "an integer >= 0", integer=True)
    system = raw.get("system", "")
    if not isinstance(system, str):
        fail("`system` must be a string")
    return PromptSet(version=version.strip(), path=str(path), sha256=hashlib.sha256(raw_bytes).hexdigest(),
                     prompts=tuple(prompts), temperature=temperature, top_p=top_p, seed=seed,
                     top_k=top_k, min_p=min_p, repeat_penalty=repeat_penalty, repeat_last_n=repeat_last_n,
                     system=system.strip())


# Characters that T5's SentencePiece vocabulary lacks or splits oddly, mapped to the ASCII the
# training captions use. NFKC alone leaves these (they are not compatibility characters), so they
# go first; NFKC then folds the rest (ligatures, full-width forms, the ellipsis).
_T5_ASCII = str.maketrans({
    "\u2010": "-",   # hyphen
    "\u2011": "-",   # non-breaking hyphen
    "\u2012": "-",   # figure dash
    "\u2013": "-",   # en dash
    "\u2014": "-",   # em dash
    "\u2015": "-",   # horizontal bar
    "\u2212": "-",   # minus sign
    "\u00a0": " ",   # no-break space
    "\u2007": " ",   # figure space
    "\u202f": " ",   # narrow no-break space
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
    "\u00ab": '"', "\u00bb": '"',
    "\u200b": "",    # zero-width space
    "\ufeff": "",    # byte-order mark
})


def normalise_text(text: str) -> str:
    """Answer text made safe for T5 tokenizers: typographic punctuation to ASCII, then NFKC, trimmed.

    Line breaks inside the answer are kept; only the ends are stripped.
    """
    return unicodedata.normalize("NFKC", text.translate(_T5_ASCII)).strip()
