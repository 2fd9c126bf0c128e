"""Both Music Flamingo back ends frame a question the same way: one transformers stand-in checkpoint,
converted to f32 GGUF by llama.cpp's own converter, asked through the real llama-server and through
mirdeck's transformers code.

Ground truth comes from the two implementations themselves: llama-server's ``/apply-template`` and
``/tokenize`` against the transformers processor's ``input_ids``; llama-server's own prompt token
count against mirdeck's context sizing; llama-server's first-token log-probabilities against
transformers' for the same weights and the same audio framing.
"""
from __future__ import annotations

import dataclasses
import os

import pytest

from backends.flamingo.prompts import load_prompts
from tests.support.flamingo_framing import gguf_of, gguf_side, hf_side, tone
from tests.support.flamingo_hf_standin import standin
from tests.support.flamingo_standin import DEFAULT_SYSTEM

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def both(llama_bin_dir):
    from backends.flamingo.hf import load
    from backends.flamingo.llama_cli import context_size
    from backends.flamingo.llama_server import LlamaServer

    folder = standin("audioflamingo3")
    model, mmproj = gguf_of(folder)
    server = LlamaServer(llama_bin_dir / "llama-server", model=model, mmproj=mmproj,
                         ctx_size=context_size(30.0, 8), gpu_layers=0)
    yield load(folder, dtype="float32"), server
    server.close()


@pytest.mark.parametrize("system", ["(the prompts file's)", "", "You describe music for a dataset."])
def test_text_token_ids_of_every_prompt_are_identical_on_both_back_ends(both, system):
    """Shipped system text, none (the template's own default turn) and another one."""
    loaded, server = both
    prompts = load_prompts()
    if system != "(the prompts file's)":
        prompts = dataclasses.replace(prompts, system=system)
    samples = tone(20.0)
    for prompt in prompts.prompts:
        g = gguf_side(server, samples, prompt.text, prompts.system, loaded.audio_token)
        h = hf_side(loaded, samples, prompt.text, prompts.system, llama_framing=False)
        # llama.cpp's mtmd writes Music Flamingo's audio as the literal <sound> token followed by the
        # embeddings; transformers replaces every <sound> slot. That one token is the only text difference.
        assert g["before"] == h["before"] + [loaded.audio_token_id], prompt.name
        assert g["after"] == h["after"], prompt.name
        expected_system = prompts.system or DEFAULT_SYSTEM  # the checkpoints' template's own
        assert g["prompt"].startswith(f"<|im_start|>system\n{expected_system}<|im_end|>\n<|im_start|>user\n")
        assert g["prompt"].endswith(f"{prompt.text}<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("seconds", [20.0, 30.0])
def test_audio_positions_follow_each_back_ends_windowing(both, seconds):
    """llama.cpp pads every 30 s window to 750 positions and, for a track of exactly 30 s, adds a silent
    window; transformers counts only the frames that hold audio. mirdeck's context sizing must follow
    llama.cpp's count, or the server refuses a 30 s track as too long for its context."""
    from backends.flamingo.llama_cli import TOKENS_PER_WINDOW, audio_windows

    loaded, server = both
    prompt = load_prompts().prompts[3]
    g = gguf_side(server, tone(seconds), prompt.text, "", loaded.audio_token)
    h = hf_side(loaded, tone(seconds), prompt.text, "", llama_framing=False)
    assert g["audio"] == audio_windows(seconds) * TOKENS_PER_WINDOW == {20.0: 750, 30.0: 1500}[seconds]
    # transformers: 100 mel frames a second, halved by the encoder's stride-2 convolution and again by pooling
    assert h["audio"] == int(seconds * 25)


def test_first_token_distribution_agrees_when_the_audio_is_framed_alike(both):
    """Same weights (f32), same text ids, the audio framed as llama.cpp frames it (whole windows, the
    literal <sound>): the five most likely first tokens are the same on both sides, each log-probability
    within 3e-3 (measured: <= 8.3e-4), though the random stand-in's distribution is so flat that its
    top-1 leads the top-2 by only 0.005-0.04 nats (which is why the stand-in's greedy texts part)."""
    loaded, server = both
    samples = tone(20.0)
    for prompt in load_prompts().prompts[:3]:
        g = gguf_side(server, samples, prompt.text, "", loaded.audio_token)
        hl = hf_side(loaded, samples, prompt.text, "", llama_framing=True)
        ours = {i: lp for i, _, lp in hl["top5"]}
        theirs = {i: lp for i, _, lp in g["top5"]}
        assert set(ours) == set(theirs), prompt.name
        assert max(abs(ours[i] - theirs[i]) for i in ours) < 3e-3, prompt.name
