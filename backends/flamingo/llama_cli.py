"""Running the bundled llama.cpp tools: finding them, sizing the context, one ``llama-mtmd-cli`` call, its logs.

``llama-mtmd-cli`` prints only the answer on stdout (``"\\n" + text + "\\n\\n"``) and everything else
on stderr; with ``--log-prefix`` an error line starts with ``E ``. Never pass ``--log-disable``
(it empties stdout too) nor ``-lv 0`` (it hides the errors); ``-lv 4`` adds the perf timings.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from backends import ROOT
from backends.flamingo.prompts import SAMPLER_ORDER, Sampling  # noqa: F401 (Sampling: re-exported)
from backends.protocol import BackendError, BadInput, ErrorKind, ModelMissing

# llama.cpp cuts the mel spectrogram into 30 s windows (3000 frames of 10 ms) and pads each to the
# encoder's full length: 750 embeddings per window after Music Flamingo's projector, whatever part of
# the window holds sound. It first appends 30 s of silence to the audio and drops the last incomplete
# window, so a track of exactly 30 s gets two windows (the second all silence).
AUDIO_WINDOW_S = 30.0
TOKENS_PER_WINDOW = 750
SAMPLE_RATE = 16000
HOP = 160          # samples per mel frame
FFT = 400          # samples per FFT frame (the reflective padding adds FFT / 2 at each end)
FRAMES_PER_WINDOW = 3000
# Chat template, system text and question: the shipped prompts file uses about half of it; the rest is room.
TEXT_BUDGET = 256


def build_variant() -> str:
    """The profile's llama.cpp build (``[llama] build``, passed by the engine), default cpu."""
    return os.environ.get("MIRDECK_LLAMA_BUILD", "cpu") or "cpu"


def tool_path(name: str) -> Path:
    """Path of a llama.cpp tool; ``ModelMissing`` with the build command if it is not built."""
    override = os.environ.get("MIRDECK_LLAMA_BIN_DIR")
    variant = build_variant()
    path = Path(override) / name if override else ROOT / "bin" / "llama" / variant / "bin" / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        hint = ("check $MIRDECK_LLAMA_BIN_DIR" if override
                else f"build it with: bin/build-llama --variant {variant}")
        raise ModelMissing(f"llama.cpp's {name} is not built (expected {path}); {hint}")
    return path


def build_stamp(tool: Path) -> dict:
    """How the tool was built (``stamp.json`` beside ``bin/``), or {} for a foreign binary."""
    try:
        stamp = json.loads((tool.resolve().parent.parent / "stamp.json").read_text())
    except (OSError, ValueError):
        return {}
    return {"llama_source": f"{stamp.get('package')} {stamp.get('version')}",
            "llama_build": stamp.get("key"), "llama_variant": stamp.get("variant")}


def audio_windows(duration_s: float) -> int:
    """How many 30 s encoder windows llama.cpp cuts ``duration_s`` seconds of 16 kHz audio into (>= 1).

    Its whisper preprocessor's arithmetic: 30 s of zeros plus FFT / 2 reflected samples at each end
    are added, mel frames are counted as ``(padded - FFT) // HOP + 1``, and only whole 3000-frame
    windows are kept. So 20 s -> 1, 29.99 s -> 2, 30 s -> 2, 35 s -> 2, 60 s -> 3 (not ceil(d / 30)).
    """
    samples = max(int(round(duration_s * SAMPLE_RATE)), FFT // 2 + 1)
    padded = samples + SAMPLE_RATE * int(AUDIO_WINDOW_S) + 2 * (FFT // 2)
    frames = (padded - FFT) // HOP + 1
    return max(1, frames // FRAMES_PER_WINDOW)


def context_size(duration_s: float, max_tokens: int) -> int:
    """Tokens of context one question about ``duration_s`` seconds of audio needs, rounded up to 256."""
    need = audio_windows(duration_s) * TOKENS_PER_WINDOW + TEXT_BUDGET + max_tokens
    return int(math.ceil(need / 256) * 256)


@dataclass
class LlamaLog:
    """What the stderr of one llama.cpp run says: timings (ms), token counts and error lines."""

    model_load_ms: float | None = None
    audio_encode_ms: float = 0.0
    audio_slices: int = 0
    prompt_eval_ms: float | None = None
    prompt_tokens: int | None = None
    eval_ms: float | None = None
    generated_tokens: int | None = None
    tokens_per_second: float | None = None
    errors: list[str] = field(default_factory=list)

    def provenance(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "errors" and v is not None}
        return out


_NUM = r"([0-9]+(?:\.[0-9]+)?)"
_LOAD = re.compile(r"\bload time\s*=\s*" + _NUM + r" ms")
_PROMPT = re.compile(r"prompt eval time\s*=\s*" + _NUM + r" ms /\s*([0-9]+) tokens")
_EVAL = re.compile(r"(?<!prompt )\beval time\s*=\s*" + _NUM + r" ms /\s*([0-9]+) runs.*?"
                   + _NUM + r" tokens per second")
# llama-mtmd-cli reports one line per encoded media batch, the server's helper one per slice.
_SLICE = re.compile(r"(?:slice encoded in|mtmd batch encoding done in) ([0-9]+) ms")


def parse_log(stderr: str) -> LlamaLog:
    log = LlamaLog()
    for line in stderr.splitlines():
        if line.startswith("E "):
            log.errors.append(line[2:].strip())
        if m := _SLICE.search(line):
            log.audio_encode_ms += float(m.group(1))
            log.audio_slices += 1
        elif m := _PROMPT.search(line):
            log.prompt_eval_ms, log.prompt_tokens = float(m.group(1)), int(m.group(2))
        elif m := _EVAL.search(line):
            log.eval_ms, log.generated_tokens = float(m.group(1)), int(m.group(2))
            log.tokens_per_second = float(m.group(3))
        elif m := _LOAD.search(line):
            log.model_load_ms = float(m.group(1))
    return log


def answer_from_stdout(stdout: bytes | str) -> str:
    """The answer inside llama-mtmd-cli's stdout framing (one leading newline, newlines at the end).

    A token limit can cut a multi-byte character in half; the dangling bytes at the end are dropped
    (as llama-server does), not turned into a replacement character.
    """
    import codecs

    data = stdout.encode("utf-8") if isinstance(stdout, str) else stdout
    if data.startswith(b"\n"):
        data = data[1:]
    return codecs.getincrementaldecoder("utf-8")(errors="replace").decode(data.rstrip(b"\n"), final=False)


def sampler_flags(sampling: Sampling) -> list[str]:
    """Every sampler setting as llama.cpp flags, with the sampler chain named explicitly.

    ``--samplers`` replaces llama.cpp's default chain (which also holds dry, top-n-sigma, typical-p
    and xtc, and applies temperature last) with the one both back ends share, so no llama.cpp default
    takes part in the draw.
    """
    return ["--temp", repr(sampling.temperature), "--top-k", str(sampling.top_k), "--top-p", repr(sampling.top_p),
            "--min-p", repr(sampling.min_p), "--repeat-penalty", repr(sampling.repeat_penalty),
            "--repeat-last-n", str(sampling.repeat_last_n), "--samplers", ";".join(SAMPLER_ORDER),
            "--seed", str(sampling.seed)]


def sampler_json(sampling: Sampling) -> dict:
    """The same settings as llama-server's request fields."""
    return {"temperature": sampling.temperature, "top_k": sampling.top_k, "top_p": sampling.top_p,
            "min_p": sampling.min_p, "repeat_penalty": sampling.repeat_penalty,
            "repeat_last_n": sampling.repeat_last_n, "samplers": list(SAMPLER_ORDER), "seed": sampling.seed}


def mtmd_cli_command(tool: Path, *, model: Path, mmproj: Path, audio: Path, prompt: str, sampling: Sampling,
                     ctx_size: int, gpu_layers: int, threads: int | None, system: str = "",
                     flash_attn: str | None = None) -> list[str]:
    cmd = [str(tool), "-m", str(model), "--mmproj", str(mmproj), "--audio", str(audio), "-p", prompt,
           "-n", str(sampling.max_tokens), "-c", str(ctx_size), "--gpu-layers", str(gpu_layers),
           *sampler_flags(sampling), "--log-prefix", "--no-log-timestamps", "--perf", "-lv", "4", "--no-warmup"]
    if system:
        cmd += ["-sys", system]
    if threads:
        cmd += ["-t", str(threads)]
    if flash_attn:
        cmd += ["-fa", flash_attn]
    return cmd


def run_mtmd_cli(cmd: list[str], *, audio_label: str, timeout_s: float | None = None) -> tuple[str, LlamaLog, str]:
    """Run one question; returns (raw answer, parsed log, stderr). Failures become classified errors."""
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise BackendError(f"llama-mtmd-cli did not answer within {timeout_s:.0f} s on {audio_label}",
                           kind=ErrorKind.TIMEOUT) from None
    stderr = done.stderr.decode("utf-8", errors="replace")
    log = parse_log(stderr)
    if done.returncode != 0:
        raise classify_failure(log.errors or stderr.strip().splitlines()[-5:], audio_label=audio_label,
                               model=cmd[cmd.index("-m") + 1], mmproj=cmd[cmd.index("--mmproj") + 1],
                               returncode=done.returncode)
    return answer_from_stdout(done.stdout), log, stderr


def classify_failure(errors: list[str], *, audio_label: str, model: str, mmproj: str,
                     returncode: int | None = None) -> BackendError:
    """Turn llama.cpp's error lines into the error kind the engine acts on."""
    text = " | ".join(errors)[-1500:] or f"exit status {returncode}"
    lowered = text.lower()
    if "audio" in lowered and ("load" in lowered or "decode" in lowered or "read" in lowered) \
            and "mmproj" not in lowered and "clip" not in lowered:
        return BadInput(f"{audio_label}: llama.cpp could not read the audio: {text}")
    if "mmproj" in lowered or "clip" in lowered or "projector" in lowered or "mtmd" in lowered:
        return ModelMissing(f"the projector {mmproj} could not be used with {model} "
                            f"(wrong or damaged mmproj file? fetch the matching one): {text}")
    if "model" in lowered and ("load" in lowered or "open" in lowered):
        return ModelMissing(f"llama.cpp could not load the model {model} (damaged file? fetch it again): {text}")
    if "out of memory" in lowered or "failed to allocate" in lowered:
        return BackendError(f"llama.cpp ran out of memory on {audio_label}: {text}", kind=ErrorKind.OUT_OF_MEMORY)
    return BackendError(f"llama-mtmd-cli failed on {audio_label} (rc {returncode}): {text}")
