"""The prompts file and the T5 normalisation shared by both Music Flamingo back ends (no binaries needed)."""
from __future__ import annotations

from pathlib import Path

import pytest

from backends.flamingo.llama_cli import answer_from_stdout, audio_windows, context_size, parse_log
from backends.flamingo.prompts import (
    FEATURE_KEYS,
    PROMPT_NAMES,
    PromptsError,
    load_prompts,
    normalise_text,
    prompts_path,
)


def test_default_prompts_file_has_the_issue_limits_and_sampling():
    prompts = load_prompts()
    limits = {p.name: p.max_tokens for p in prompts.prompts}
    assert limits == {"full": 500, "technical": 200, "genre_mood": 150, "instrumentation": 100, "structure": 300}
    assert (prompts.temperature, prompts.top_p) == (0.7, 0.9)
    assert prompts.version and len(prompts.sha256) == 64
    assert FEATURE_KEYS == tuple("music_flamingo_" + n for n in PROMPT_NAMES)


def test_run_overrides_and_file_override(tmp_path, monkeypatch):
    text = (prompts_path().read_text().replace('version = "', 'version = "mine-')
            .replace("List the timbres", "Name the sounds"))
    mine = tmp_path / "mine.toml"
    mine.write_text(text)
    monkeypatch.setenv("MIRDECK_FLAMINGO_PROMPTS", str(mine))
    assert prompts_path() == mine
    assert prompts_path({"prompts_file": "/x.toml"}).as_posix() == "/x.toml"  # the run option wins
    loaded = load_prompts(mine, overrides={"temperature": 0, "seed": 7, "top_p": None})
    assert loaded.version.startswith("mine-")
    assert loaded.prompts[3].text.startswith("Name the sounds")
    assert (loaded.temperature, loaded.seed, loaded.top_p) == (0.0, 7, 0.9)
    assert loaded.sha256 != load_prompts().sha256


@pytest.mark.parametrize("edit, complaint", [
    (lambda t: t.replace("[prompt.structure]", "[prompt.layout]"), "missing: structure"),
    (lambda t: t.replace("max_tokens = 100", "max_tokens = 0"), "max_tokens"),
    (lambda t: t.replace("top_p = 0.9", "top_p = 1.5"), "top_p"),
    (lambda t: t.replace("min_p = 0.05", "min_p = 1.0"), "min_p"),
    (lambda t: t.replace("top_k = 40", "top_k = 2.5"), "top_k"),
    (lambda t: t.replace("top_k = 40", ""), "missing: top_k"),
    (lambda t: t.replace("repeat_penalty = 1.0", "repeat_penalty = 1.0\ntypical_p = 0.5"), "unknown keys typical_p"),
    (lambda t: t.replace('version = "', 'version = "" #'), "version"),
    (lambda t: t + "\n[[[", "not a valid TOML"),
])
def test_bad_prompts_files_name_the_file_and_the_problem(tmp_path, edit, complaint):
    bad = tmp_path / "bad.toml"
    bad.write_text(edit(prompts_path().read_text()))
    with pytest.raises(PromptsError) as err:
        load_prompts(bad)
    assert str(bad) in str(err.value) and complaint in str(err.value)


def test_missing_prompts_file_is_named(tmp_path):
    with pytest.raises(PromptsError, match="nothere.toml"):
        load_prompts(tmp_path / "nothere.toml")


def test_normalisation_for_t5():
    raw = "\u201cLo\u2011fi\u201d hip\u2010hop \u2013 85\u00a0BPM\u202fin A\u2014minor, it\u2019s \ufb01ne\u2026 \uff21"
    assert normalise_text(raw) == '"Lo-fi" hip-hop - 85 BPM in A-minor, it\'s fine... A'
    assert normalise_text("  line one\nline two \n\n") == "line one\nline two"
    assert normalise_text("\n\n") == ""
    assert normalise_text("plain ascii stays") == "plain ascii stays"


def test_cli_stdout_framing():
    assert answer_from_stdout("\nA warm groove.\n\n\n") == "A warm groove."  # stopped by the model
    assert answer_from_stdout("\nfirst line\nsecond\n\n") == "first line\nsecond"  # stopped by -n
    assert answer_from_stdout("\n\n\n") == ""
    # A limit that cuts a character in half: the dangling bytes go, earlier bad bytes stay visible.
    assert answer_from_stdout(b"\nSent\xe2\x80 ok \xe2\x80\n\n") == "Sent\ufffd ok "


def test_context_is_sized_from_audio_length():
    # llama.cpp's arithmetic (30 s of silence appended, only whole 3000-frame windows kept); checked
    # against the real llama-server's prompt token count in tests/flamingo/test_framing.py.
    assert audio_windows(0.5) == 1 and audio_windows(20.0) == 1 and audio_windows(29.98) == 1
    assert audio_windows(30.0) == 2 and audio_windows(35.0) == 2 and audio_windows(60.0) == 3
    assert audio_windows(450) == 16
    ctx = context_size(450, 500)
    assert ctx >= 16 * 750 + 500 and ctx % 256 == 0


def test_log_parsing():
    stderr = "\n".join([
        "I audio slice encoded in 120 ms", "I audio slice encoded in 80 ms",
        "I llama_perf_context_print:        load time =    1234.50 ms",
        "I llama_perf_context_print: prompt eval time =     500.00 ms /   775 tokens "
        "(    0.65 ms per token,  1550.00 tokens per second)",
        "I llama_perf_context_print:        eval time =     300.00 ms /    30 runs   "
        "(   10.00 ms per token,   100.00 tokens per second)",
        "E clip_model_loader: failed to load mmproj"])
    log = parse_log(stderr)
    assert (log.audio_encode_ms, log.audio_slices) == (200.0, 2)
    assert (log.model_load_ms, log.prompt_tokens, log.generated_tokens, log.tokens_per_second) == (
        1234.5, 775, 30, 100.0)
    assert log.errors == ["clip_model_loader: failed to load mmproj"]


def test_both_back_ends_receive_every_sampler_setting_from_the_file(tmp_path):
    """llama.cpp's flags, llama-server's JSON and the transformers sampler all carry the file's values:
    none is left for a library to fill in with its own default (llama.cpp: top-k 40, min-p 0.05,
    top-p 0.95, its own sampler order)."""
    from backends.flamingo.llama_cli import mtmd_cli_command, sampler_json
    from backends.flamingo.prompts import SAMPLER_ORDER, SAMPLING_KEYS

    text = prompts_path().read_text()
    for old, new in (("temperature = 0.7", "temperature = 0.55"), ("top_k = 40", "top_k = 17"),
                     ("top_p = 0.9", "top_p = 0.83"), ("min_p = 0.05", "min_p = 0.02"),
                     ("repeat_penalty = 1.0", "repeat_penalty = 1.07"), ("repeat_last_n = 64", "repeat_last_n = 33"),
                     ("seed = 1234", "seed = 99")):
        assert old in text, old
        text = text.replace(old, new)
    mine = tmp_path / "mine.toml"
    mine.write_text(text)
    prompts = load_prompts(mine)
    expected = {"temperature": 0.55, "top_k": 17, "top_p": 0.83, "min_p": 0.02, "repeat_penalty": 1.07,
                "repeat_last_n": 33, "seed": 99}
    sampling = prompts.sampling(prompts.prompts[2])
    assert {k: getattr(sampling, k) for k in SAMPLING_KEYS} == expected
    assert sampling.max_tokens == prompts.prompts[2].max_tokens
    assert prompts.provenance()["sampler_order"] == list(SAMPLER_ORDER)
    assert {k: prompts.provenance()[k] for k in SAMPLING_KEYS} == expected

    body = sampler_json(sampling)  # what llama-server receives
    assert {k: body[k] for k in SAMPLING_KEYS} == expected and body["samplers"] == list(SAMPLER_ORDER)
    cmd = mtmd_cli_command(Path("/bin/llama-mtmd-cli"), model=Path("m"), mmproj=Path("p"), audio=Path("a.wav"),
                           prompt="q", sampling=sampling, ctx_size=1024, gpu_layers=0, threads=None)
    flag = lambda name: cmd[cmd.index(name) + 1]  # noqa: E731
    assert (float(flag("--temp")), int(flag("--top-k")), float(flag("--top-p")), float(flag("--min-p")),
            float(flag("--repeat-penalty")), int(flag("--repeat-last-n")), int(flag("--seed"))) == \
        tuple(expected.values())
    assert flag("--samplers") == "penalties;temperature;top_k;top_p;min_p"


def test_transformers_sampler_follows_the_shared_chain():
    """The HF side's picker against a hand computation of the same chain: penalty, temperature,
    top-k, top-p, min-p. Logits are built so each stage removes a known token."""
    import torch

    from backends.flamingo.hf import _sampler
    from backends.flamingo.prompts import Sampling

    # Token 0 leads until the penalty (it was seen) halves it; then 1 leads.
    logits = torch.tensor([[4.0, 3.0, 2.9, 1.0, -5.0]])
    greedy = _sampler(Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=1, repeat_penalty=2.0), "cpu")
    assert greedy(logits.clone(), [0]) == 1
    assert greedy(logits.clone(), [3]) == 0  # penalty only on tokens in the window
    windowed = _sampler(Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=1, repeat_penalty=2.0,
                                 repeat_last_n=1), "cpu")
    assert windowed(logits.clone(), [0, 3]) == 0  # token 0 fell out of the 1-token window

    # top-k 2 after the penalty leaves {1, 2}; no draw may ever give anything else.
    pick = _sampler(Sampling(temperature=1.0, top_p=1.0, seed=5, max_tokens=1, top_k=2, repeat_penalty=2.0), "cpu")
    assert {pick(logits.clone(), [0]) for _ in range(200)} == {1, 2}
    # min-p 0.5 at temperature 0.1: token 2's probability is exp(-1) = 0.37 of token 1's -> only 1 is left.
    sharp = _sampler(Sampling(temperature=0.1, top_p=1.0, seed=5, max_tokens=1, min_p=0.5, repeat_penalty=2.0),
                     "cpu")
    assert {sharp(logits.clone(), [0]) for _ in range(50)} == {1}
