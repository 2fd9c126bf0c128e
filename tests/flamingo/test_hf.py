"""flamingo_hf on tiny random-weight stand-ins of both checkpoints, loaded with from_pretrained.

Through the real engine and worker where the behaviour is the run's (keys, counts, limits), in
process where a failure has to be provoked inside the model (out of memory) or an independent
implementation is compared (transformers' own ``generate``).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from backends.flamingo.prompts import FEATURE_KEYS, MODEL_KEY, PROMPT_NAMES, load_prompts
from backends.protocol import BadInput, ModelMissing, OutOfMemory
from tests.support.flamingo_hf_standin import LIMITS, small_prompts, standin
from tests.support.helpers import info_of, run_engine, sine, write_track
from tui.run.store import PROVENANCE_KEY

os.environ.setdefault("HF_HUB_OFFLINE", "1")
@pytest.fixture(scope="module")
def two_tracks(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf") / "dataset"
    write_track(root, "Artist - Tone, with comma", sine(220.0, 8.0))
    write_track(root, "Ünïcode – 長い", sine(330.0, 35.0, channels=1))  # two 30 s windows
    return root


def expected_keys() -> set[str]:
    from backends.registry import all_specs

    specs = all_specs()
    if "flamingo_gguf" in specs:  # the GGUF back end's declared keys, where it is merged in
        return set(specs["flamingo_gguf"].keys)
    return set(FEATURE_KEYS) | {MODEL_KEY}


@pytest.mark.slow
@pytest.mark.parametrize("architecture,label", [("audioflamingo3", "transformers_fp32"),
                                                ("musicflamingo", "transformers_fp32_2601")])
def test_run_writes_gguf_keys_with_one_load_one_encode_and_shared_limits(two_tracks, tmp_path, architecture,
                                                                         label):
    prompts_file = small_prompts(tmp_path / "prompts.toml")
    events, stats = run_engine(two_tracks, only=["flamingo_hf"], overwrite=["flamingo_hf"], jobs=1,
                               module_options={"flamingo_hf": {"model_dir": str(standin(architecture)),
                                                               "prompts_file": str(prompts_file)}})
    assert stats["flamingo_hf"].done == 2, [e for e in events if e.name == "module_failed"]
    prompts = load_prompts(prompts_file)
    loads = []
    for folder in sorted(two_tracks.iterdir()):
        info = info_of(folder)
        written = {k for k in info if k.startswith("music_flamingo_")}
        assert written == expected_keys()
        assert info[MODEL_KEY] == label
        prov = info[PROVENANCE_KEY]["flamingo_hf"]
        # The audio is featurised and encoded once per track; the prefix is evaluated once and
        # each of the five questions reuses it.
        assert (prov["audio_featurisations"], prov["audio_encodes"], prov["prefix_evaluations"]) == (1, 1, 1)
        assert prov["prompt_tokens_cached"] == 5 * prov["prefix_tokens"]
        assert prov["prompt_version"] == "test-small-1" and prov["prompts_sha256"] == prompts.sha256
        for name in PROMPT_NAMES:
            q = prov["questions"][name]
            assert q["max_tokens"] == LIMITS[name]
            assert 1 <= q["generated_tokens"] <= LIMITS[name]
            assert q["prompt_tokens_cached"] == prov["prefix_tokens"]
            assert q["prompt_tokens_evaluated"] == q["prompt_tokens"] - prov["prefix_tokens"]
        loads.append(prov["model_loads"])
        seconds, windows = (8.0, 1) if "comma" in folder.name else (35.0, 2)
        assert prov["audio_windows"] == windows and prov["audio_tokens"] == _tokens_for(seconds)
    assert loads == [1, 1]  # the second track found the model loaded in the same worker


@pytest.mark.slow
def test_tracks_per_call_writes_the_same_texts_with_one_encode_per_track(two_tracks, tmp_path):
    """Through the engine: the two tracks' questions as rows of one batch (tracks_per_call = 2)
    write what one track at a time writes, each track featurised, encoded and prefilled once."""
    prompts_file = small_prompts(tmp_path / "prompts.toml")
    opts = {"model_dir": str(standin("audioflamingo3")), "prompts_file": str(prompts_file), "temperature": 0}
    folders = sorted(two_tracks.iterdir())
    texts = {}
    for per_call in (1, 2):
        events, stats = run_engine(two_tracks, only=["flamingo_hf"], overwrite=["flamingo_hf"], jobs=1,
                                   module_options={"flamingo_hf": {**opts, "tracks_per_call": per_call}})
        assert stats["flamingo_hf"].done == 2, [e for e in events if e.name == "module_failed"]
        texts[per_call] = [{k: v for k, v in info_of(f).items() if k.startswith("music_flamingo_")} for f in folders]
        for folder in folders:
            prov = info_of(folder)[PROVENANCE_KEY]["flamingo_hf"]
            assert prov["tracks_per_call"] == per_call
            assert (prov["audio_featurisations"], prov["audio_encodes"], prov["prefix_evaluations"]) == (1, 1, 1)
            assert prov["prompt_tokens_cached"] == 5 * prov["prefix_tokens"]
            if per_call == 2:
                assert prov["question_batching"]["tracks_in_batch"] == 2
                assert prov["question_batching"]["rows"] == 10
                assert prov["decode"]["batch_size"] == 10 and prov["decode"]["tracks_in_batch"] == 2
                assert prov["decode"]["generated_tokens"] == prov["generated_tokens"]
    assert texts[1] == texts[2]
    assert texts[1][0] != texts[1][1]


def _tokens_for(seconds: float) -> int:
    """Audio tokens for this much audio: 100 mel frames/s, conv stride 2, then pooling by 2 (750 per 30 s)."""
    frames = int(seconds * 100)
    return ((frames - 1) // 2 + 1 - 2) // 2 + 1


@pytest.mark.slow
def test_answers_are_normalised_for_t5_like_the_gguf_back_end(tmp_path):
    root = tmp_path / "ds"
    folder = write_track(root, "scripted", sine(440.0, 5.0))
    prompts_file = small_prompts(tmp_path / "prompts.toml", temperature=0.7)
    events, stats = run_engine(root, only=["flamingo_hf"], jobs=1, module_options={"flamingo_hf": {
        "model_dir": str(standin("audioflamingo3", "scripted")), "prompts_file": str(prompts_file)}})
    assert stats["flamingo_hf"].done == 1
    info = info_of(folder)
    texts = [info[k] for k in FEATURE_KEYS if info[k] is not None]
    # The scripted stand-in writes curly apostrophes (’s); the stored text has ASCII ones only.
    assert texts and any("'s" in t for t in texts)
    assert not any(c in t for t in texts for c in "\u2019\u2018\u201c\u201d\u00a0")
    assert all(t == t.strip() for t in texts)


# ---- in process ---------------------------------------------------------------------------------

def _track(tmp_path: Path, pcm16k: np.ndarray, options: dict, name: str = "track"):
    from backends.track import Source, Track

    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    npy = folder / "mix16k.npy"
    np.save(npy, pcm16k.reshape(-1, 1).astype(np.float32))
    source = Source(name="mix", path=str(folder / "full_mix.flac"), sample_rate=44100, channels=1,
                    frames=int(len(pcm16k) * 44100 / 16000), pcm={"16000": str(npy)})
    return Track(request_id="t", folder=folder, name=name, sources={"mix": source}, options=options)


def _tone(seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture(scope="module")
def af3():
    from backends.flamingo.hf import load

    return load(standin("audioflamingo3"))


def test_prefix_reuse_gives_the_same_tokens_as_transformers_generate(af3):
    """Greedy: cached prefix, recomputed prefix and transformers' own generate() agree token for token."""
    import torch

    from backends.flamingo.hf import Sampling, TrackSession, render_prompt

    pcm = _tone(12.0)
    question = "Describe the rhythm."
    greedy = Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=8)
    reused = TrackSession(af3, pcm, reuse_prefix=True)
    first = reused.ask("Something else first.", greedy)  # leaves the cache cropped back to the prefix
    with_cache = reused.ask(question, greedy)
    without = TrackSession(af3, pcm, reuse_prefix=False).ask(question, greedy)
    prefix, suffix = render_prompt(af3, question)
    inputs = af3.processor(text=[prefix + suffix], audio=[pcm], return_tensors="pt")
    with torch.inference_mode():
        out = af3.model.generate(**inputs, max_new_tokens=8, do_sample=False, min_new_tokens=8)
    reference = af3.processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert with_cache.text == without.text == reference
    assert first.prompt_tokens_cached == with_cache.prompt_tokens_cached == reused.prefix_tokens
    assert without.prompt_tokens_evaluated == without.prompt_tokens and without.prompt_tokens_cached == 0


def _generate(loaded, pcm, question: str, max_tokens: int) -> str:
    """transformers' own generate() on the whole prompt, greedy, for exactly ``max_tokens`` tokens."""
    import torch

    from backends.flamingo.hf import render_prompt

    prefix, suffix = render_prompt(loaded, question)
    inputs = loaded.processor(text=[prefix + suffix], audio=[pcm], return_tensors="pt")
    with torch.inference_mode():
        out = loaded.model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False, min_new_tokens=max_tokens)
    return loaded.processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_five_questions_in_one_batch_give_the_sequential_and_generate_texts(af3):
    """Greedy: the batch (questions of different lengths padded between prefix and question, rows
    leaving at their own limits) writes, for every question, the text of the sequential path and of
    transformers' own generate() on the whole prompt."""
    from backends.flamingo.hf import Sampling, TrackSession

    pcm = _tone(12.0)
    questions = ["Describe the rhythm.", "Key?", "Which instruments play, and how do they interact in the mix?",
                 "Genre and mood, in one sentence.", "Structure?"]
    limits = [9, 4, 7, 1, 6]
    greedy = [Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=n) for n in limits]
    session = TrackSession(af3, pcm)
    sequential = [session.ask(q, s) for q, s in zip(questions, greedy)]
    batched = TrackSession(af3, pcm).ask_batch(list(zip(questions, greedy)))
    assert len({len(session.question_ids(q)[0]) for q in questions}) >= 3  # real padding
    assert [a.text for a in batched] == [a.text for a in sequential]
    assert [a.generated_tokens for a in batched] == limits == [a.generated_tokens for a in sequential]
    assert all(a.finish_reason == "length" for a in batched)
    assert [a.text for a in batched] == [_generate(af3, pcm, q, n) for q, n in zip(questions, limits)]
    assert {a.prompt_tokens_cached for a in batched} == {session.prefix_tokens}
    assert [a.prompt_tokens for a in batched] == [a.prompt_tokens for a in sequential]


def test_several_tracks_in_one_batch_give_each_track_its_own_texts(af3):
    """Greedy: three tracks of different lengths (prefixes of one and two audio windows, padded to
    the longest) with their five questions as 15 rows of one batch write, track by track, the texts
    of each track's own batch and of the sequential path."""
    from backends.flamingo.hf import Sampling, TrackSession, ask_tracks

    pcms = [_tone(12.0, 440.0), _tone(35.0, 220.0), _tone(4.0, 660.0)]
    questions = ["Describe the rhythm.", "Key?", "Which instruments play, and how do they interact in the mix?",
                 "Genre and mood, in one sentence.", "Structure?"]
    greedy = [Sampling(temperature=0.0, top_p=1.0, seed=0, max_tokens=n) for n in (9, 4, 7, 2, 6)]
    asked = list(zip(questions, greedy))
    sessions = [TrackSession(af3, pcm) for pcm in pcms]
    assert len({s.prefix_tokens for s in sessions}) == 3  # real prefix padding: three lengths
    together = ask_tracks(sessions, asked)
    for pcm, answers in zip(pcms, together):
        alone = TrackSession(af3, pcm).ask_batch(asked)
        session = TrackSession(af3, pcm)
        sequential = [session.ask(q, s) for q, s in asked]
        assert [a.text for a in answers] == [a.text for a in alone] == [a.text for a in sequential]
        assert [a.generated_tokens for a in answers] == [a.generated_tokens for a in sequential]
        assert {a.prompt_tokens_cached for a in answers} == {session.prefix_tokens}
    # The tracks heard differently answer differently (no row read another track's prefix).
    assert len({tuple(a.text for a in answers) for answers in together}) == 3


def test_a_batch_row_stops_at_its_own_end_token_and_sampling_follows_the_seed(tmp_path):
    """The scripted stand-in stops by itself: each row leaves the batch at its own end token, and with
    sampling on and the same seed the batch draws what the sequential path draws, question by question."""
    from backends.flamingo.hf import Sampling, TrackSession, load

    scripted = load(standin("audioflamingo3", "scripted"))
    pcm = _tone(4.0)
    questions = [f"Question {i}, {'long ' * i}?" for i in range(5)]
    # A seed per question here: the scripted distribution is the same at every step, so one seed would
    # draw the same answer five times and every row would leave the batch at the same step.
    sampled = [Sampling(temperature=1.0, top_p=1.0, seed=11 + i, max_tokens=40) for i in range(5)]
    sequential = [TrackSession(scripted, pcm).ask(q, s) for q, s in zip(questions, sampled)]
    batched = TrackSession(scripted, pcm).ask_batch(list(zip(questions, sampled)))
    assert [a.text for a in batched] == [a.text for a in sequential]
    assert [a.finish_reason for a in batched] == [a.finish_reason for a in sequential]
    assert "stop" in {a.finish_reason for a in batched}
    assert len({a.generated_tokens for a in batched}) > 1  # rows left the batch at different steps
    other_seed = [Sampling(temperature=1.0, top_p=1.0, seed=21 + i, max_tokens=40) for i in range(5)]
    assert [a.text for a in TrackSession(scripted, pcm).ask_batch(list(zip(questions, other_seed)))] != \
        [a.text for a in batched]


def test_the_run_records_the_batching_and_batch_or_not_writes_the_same_keys(tmp_path, af3):
    from backends.extractors.flamingo_hf import FlamingoHF

    prompts = str(small_prompts(tmp_path / "p.toml"))
    results = {}
    for batch in (True, False):
        extractor = FlamingoHF()
        track = _track(tmp_path, _tone(5.0), {"model_dir": str(af3.folder), "prompts_file": prompts,
                                              "batch_questions": batch}, name=f"batch {batch}")
        results[batch] = extractor.process(track).features
        batching = extractor.model_provenance["question_batching"]
        assert batching == ({"mode": "one batch over the shared prefix", "batch_size": 5} if batch
                            else {"mode": "sequential", "batch_size": 1})
        assert extractor.model_provenance["audio_encodes"] == 1
    assert results[True] == results[False]


def test_question_tokens_match_the_processor_on_the_whole_prompt(af3):
    """Tokenising the question part alone is exact: same ids as the processor on the full text."""
    from backends.flamingo.hf import TrackSession, render_prompt

    pcm = _tone(3.0)
    session = TrackSession(af3, pcm)
    question = "Tempo, key — and “mood”?"
    prefix, suffix = render_prompt(af3, question)
    whole = af3.processor(text=[prefix + suffix], audio=[pcm], return_tensors="pt")["input_ids"][0].tolist()
    assert session.prefix_ids[0].tolist() + session.question_ids(question)[0].tolist() == whole


def _out_of_memory_at(extractor, track, nth: int) -> str:
    """Process ``track`` with the language model running out of GPU memory at its ``nth`` forward
    call; the OutOfMemory error's message."""
    import torch

    calls = {"n": 0}

    def explode(module, args):
        calls["n"] += 1
        if calls["n"] == nth:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    handle = extractor.loaded.model.model.language_model.register_forward_pre_hook(explode)
    try:
        with pytest.raises(OutOfMemory) as caught:
            extractor.process(track)
    finally:
        handle.remove()
    return str(caught.value)


def test_out_of_memory_names_track_and_prompt_writes_nothing_and_the_worker_goes_on(tmp_path, af3):

    from backends.extractors.flamingo_hf import FlamingoHF

    extractor = FlamingoHF()
    options = {"model_dir": str(af3.folder), "prompts_file": str(small_prompts(tmp_path / "p.toml")),
               "batch_questions": False}
    track = _track(tmp_path, _tone(4.0), options, name="oom track")
    extractor.process(track)  # loads the model
    # 1 prefix + 7 (full) + 5 (technical) + 2: inside genre_mood
    message = _out_of_memory_at(extractor, track, 15)
    assert "oom track" in message and "genre_mood" in message and "nothing was written" in message
    features = extractor.process(track).features  # same worker, same model: the next request works
    assert set(features) == set(FEATURE_KEYS) | {MODEL_KEY}
    assert extractor.model_loads == 1


def test_out_of_memory_in_the_batch_names_the_track_and_the_worker_goes_on(tmp_path, af3):

    from backends.extractors.flamingo_hf import FlamingoHF

    extractor = FlamingoHF()
    options = {"model_dir": str(af3.folder), "prompts_file": str(small_prompts(tmp_path / "p.toml"))}
    track = _track(tmp_path, _tone(4.0), options, name="batch oom track")
    first = extractor.process(track).features
    # 1 prefix + 1 batch of questions + 1 step: inside the batch's decoding
    message = _out_of_memory_at(extractor, track, 4)
    assert "batch oom track" in message and "one batch" in message and "batch_questions = false" in message
    assert extractor.process(track).features == first


def test_bad_audio_and_missing_model_are_named(tmp_path, af3):
    from backends.extractors.flamingo_hf import FlamingoHF
    from backends.flamingo.hf import TrackSession

    with pytest.raises(BadInput, match="NaN"):
        TrackSession(af3, np.full(16000, np.nan, dtype=np.float32), label="nan.wav")
    with pytest.raises(BadInput, match="no audio"):
        TrackSession(af3, np.zeros(0, dtype=np.float32), label="empty.wav")
    track = _track(tmp_path, _tone(1.0), {"model_dir": str(tmp_path / "nowhere")})
    with pytest.raises(ModelMissing, match="mirdeck models fetch music_flamingo_hf"):
        FlamingoHF().process(track)


def test_the_two_back_ends_are_alternatives_never_run_together():
    from backends.registry import RegistryError, all_specs
    from tui.run.plan import resolve_modules

    specs = all_specs()
    assert set(specs["flamingo_hf"].keys) == set(specs["flamingo_gguf"].keys)
    assert "flamingo_hf" not in resolve_modules(specs)  # a plain run uses the GGUF back end
    assert resolve_modules(specs, only=["flamingo_hf"]) == ["flamingo_hf"]
    with pytest.raises(RegistryError, match="write the same keys"):
        resolve_modules(specs, only=["flamingo_hf", "flamingo_gguf"])
