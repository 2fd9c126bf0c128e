"""The prompts file and the T5 normalisation shared by both Music Flamingo back ends (no binaries needed)."""
from __future__ import annotations

import pytest

from backends.flamingo_common import (FEATURE_KEYS, PROMPT_NAMES, PromptsError, load_prompts, normalise_text,
                                      prompts_path)
from backends.llama_cpp import answer_from_stdout, audio_windows, context_size, parse_log


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


def test_context_is_sized_from_audio_length():
    assert audio_windows(0.5) == 1 and audio_windows(30.0) == 1 and audio_windows(30.01) == 2
    assert audio_windows(450) == 15
    ctx = context_size(450, 500)
    assert ctx >= 15 * 750 + 500 and ctx % 256 == 0


def test_log_parsing():
    stderr = "\n".join([
        "I audio slice encoded in 120 ms", "I audio slice encoded in 80 ms",
        "I llama_perf_context_print:        load time =    1234.50 ms",
        "I llama_perf_context_print: prompt eval time =     500.00 ms /   775 tokens (    0.65 ms per token,  1550.00 tokens per second)",
        "I llama_perf_context_print:        eval time =     300.00 ms /    30 runs   (   10.00 ms per token,   100.00 tokens per second)",
        "E clip_model_loader: failed to load mmproj"])
    log = parse_log(stderr)
    assert (log.audio_encode_ms, log.audio_slices) == (200.0, 2)
    assert (log.model_load_ms, log.prompt_tokens, log.generated_tokens, log.tokens_per_second) == (1234.5, 775, 30, 100.0)
    assert log.errors == ["clip_model_loader: failed to load mmproj"]
