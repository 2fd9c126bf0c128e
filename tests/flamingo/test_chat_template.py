"""The transformers back end's prompt split, against the chat template the real checkpoints ship.

Both stand-ins carry the processor template of ``nvidia/music-flamingo-hf`` and
``nvidia/music-flamingo-2601-hf`` (tests/support/chat_templates/README.md says where it comes from). The
public usage example lists the question before the audio in the user turn; the split the back end
makes (system turn + audio once, then each question) must be the layout that example renders.
"""
from __future__ import annotations

import copy
import os

import numpy as np
import pytest

from tests.support.flamingo_hf_standin import standin
from tests.support.flamingo_standin import DEFAULT_SYSTEM, TEMPLATES

os.environ.setdefault("HF_HUB_OFFLINE", "1")
QUESTIONS = ("Describe the rhythm.", "Tempo, key — and “mood”?")


@pytest.fixture(scope="module", params=["audioflamingo3", "musicflamingo"])
def loaded(request):
    from backends.flamingo.hf import load

    return load(standin(request.param))


def public_example(question: str, system: str = "") -> list[dict]:
    """The model card's conversation: text first, then the audio, in one user turn."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": [{"type": "text", "text": question},
                                                 {"type": "audio", "path": "track.wav"}]})
    return messages


def rendered(loaded, messages) -> str:
    text = loaded.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text[0] if isinstance(text, list) else text


def test_standins_load_the_checkpoints_own_template(loaded):
    real = (TEMPLATES / "music_flamingo_processor.jinja").read_text(encoding="utf-8")
    assert loaded.processor.chat_template == real
    assert (loaded.folder / "chat_template.jinja").read_text(encoding="utf-8") == real


@pytest.mark.parametrize("system", ["", "You describe music for a dataset."])
def test_the_public_example_renders_the_layout_the_prefix_split_assumes(loaded, system):
    from backends.flamingo.hf import render_prompt

    prefixes = set()
    for question in QUESTIONS:
        prefix, suffix = render_prompt(loaded, question, system)
        assert prefix + suffix == rendered(loaded, public_example(question, system))
        assert suffix == f"{question}<|im_end|>\n<|im_start|>assistant\n"
        prefixes.add(prefix)
    # One prefix for every question: the system turn (the checkpoint's default when none is given),
    # the user turn's start and the audio.
    assert prefixes == {f"<|im_start|>system\n{system or DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\n"
                        f"{loaded.audio_token}"}


def test_cached_prefix_and_question_tokens_are_the_processors_ids_of_the_public_example(loaded):
    """Token level, audio expanded (and wrapped in <|sound_bos|>/<|sound_eos|> on the 2601 checkpoint)."""
    from backends.flamingo.hf import TrackSession

    pcm = (0.3 * np.sin(2 * np.pi * 440.0 * np.arange(int(16000 * 3.0)) / 16000)).astype(np.float32)
    session = TrackSession(loaded, pcm)
    for question in QUESTIONS:
        text = rendered(loaded, public_example(question))
        whole = loaded.processor(text=[text], audio=[pcm], return_tensors="pt")["input_ids"][0].tolist()
        assert session.prefix_ids[0].tolist() + session.question_ids(question)[0].tolist() == whole
    if loaded.architecture == "musicflamingo":
        ids = session.prefix_ids[0].tolist()
        tok = loaded.processor.tokenizer
        assert ids[-1] == tok.convert_tokens_to_ids("<|sound_eos|>")  # the audio closes the prefix
        assert tok.convert_tokens_to_ids("<|sound_bos|>") in ids


def test_a_template_that_writes_the_question_before_the_audio_is_refused(loaded):
    from backends.flamingo.hf import render_prompt
    from backends.protocol import BackendError

    text_first = copy.copy(loaded)
    text_first.processor = copy.copy(loaded.processor)
    text_first.processor.chat_template = loaded.processor.chat_template.replace(
        "{% if audio.found %}{{ '<sound>' }}{% endif %}{{ text_buf.v }}",
        "{{ text_buf.v }}{% if audio.found %}{{ '<sound>' }}{% endif %}")
    assert text_first.processor.chat_template != loaded.processor.chat_template
    with pytest.raises(BackendError, match="renders the question before the audio token '<sound>'"):
        render_prompt(text_first, QUESTIONS[0])
