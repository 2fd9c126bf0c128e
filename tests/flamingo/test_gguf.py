"""flamingo_gguf end to end: the real engine, the real llama.cpp binaries built from the pinned source,
and tiny random-weight Music Flamingo stand-ins converted with llama.cpp's own converter.

The first run builds llama.cpp (about 10 minutes on 2 cores) into ~/.cache/mirdeck/llama; later runs
reuse it, and the converted stand-ins, from the cache.
"""
from __future__ import annotations

import subprocess

import pytest
import soundfile

from tests.support.helpers import events_named, info_of, run_engine, sine, write_track
from tui import paths
from tui.paths import ROOT

# The first test may build llama.cpp (~10 min on 2 cores) inside its setup: more than the default timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
MODULE = "flamingo_gguf"
KEYS = ("full", "technical", "genre_mood", "instrumentation", "structure")


@pytest.fixture(scope="session")
def standins(llama_bin_dir):
    """Converted stand-ins, cached by the builder's own source so an edit rebuilds them."""
    from tests.support import flamingo_standin

    digest = flamingo_standin.source_digest()
    folder = paths.cache_dir() / "test-standins" / digest
    return {b: flamingo_standin.build(folder, b) for b in ("random", "scripted", "silent")}


@pytest.fixture
def small_prompts(tmp_path):
    """The real prompts file with small token limits, so the tests stay quick."""
    text = (ROOT / "models" / "flamingo_prompts.toml").read_text()
    for old, new in (("500", "12"), ("200", "9"), ("150", "8"), ("100", "6"), ("300", "10")):
        text = text.replace(f"max_tokens = {old}", f"max_tokens = {new}")
    path = tmp_path / "prompts.toml"
    path.write_text(text.replace('version = "', 'version = "test-'))
    return path


def options(standin, prompts, **extra):
    model, mmproj = standin
    return {MODULE: {"model_file": str(model), "mmproj_file": str(mmproj), "model_label": "gguf_standin-random",
                     "prompts_file": str(prompts), **extra}}


def dataset_of(tmp_path, count=2, seconds=4.0, name="ds"):
    root = tmp_path / name
    for i in range(count):
        write_track(root, f"Track {i}", sine(220.0 * (i + 1), seconds))
    return root


def prov(folder):
    return info_of(folder)["_mirdeck"][MODULE]


def features(folder):
    info = info_of(folder)
    return {k: info["music_flamingo_" + k] for k in KEYS}


@pytest.mark.parametrize("parallel", [5, 1])
def test_per_prompt_and_served_give_identical_text_and_served_encodes_audio_once(tmp_path, standins, small_prompts,
                                                                                 parallel):
    """Served with five parallel slots (the questions decoded as one batch) or one slot (in series):
    the same texts as one llama-mtmd-cli run per question, and the audio encoded once per track."""
    data = dataset_of(tmp_path, count=3)
    tracks = sorted(p for p in data.iterdir() if p.is_dir())
    opts = options(standins["random"], small_prompts, temperature=0, parallel=parallel)
    run_engine(data, only=[MODULE], module_options={MODULE: {**opts[MODULE], "mode": "per_prompt"}})
    per_prompt = {t.name: features(t) for t in tracks}
    pp = prov(tracks[0])
    assert pp["mode"] == "per_prompt" and pp["model_loads"] == 5 and pp["audio_encodes"] == 5
    assert pp["prompt_version"].startswith("test-") and pp["temperature"] == 0.0
    assert all(q["prompt_tokens"] >= 750 for q in pp["questions"].values())  # audio every time

    events, _ = run_engine(data, only=[MODULE], overwrite=[MODULE], module_options=opts)
    assert not events_named(events, "module_failed")
    served = {t.name: features(t) for t in tracks}
    assert served == per_prompt
    batching = prov(tracks[0])["question_batching"]
    assert batching["batch_size"] == parallel
    assert batching["mode"] == ("parallel llama-server slots, prefix copied" if parallel > 1 else "sequential")
    if parallel > 1:  # the warm-up encoded the audio; every question found it in its slot
        assert batching["warmup"]["prompt_tokens"] >= 750 and batching["slot_file_bytes"] > 0
    assert all(isinstance(v, str) and v for f in served.values() for v in f.values())
    assert info_of(tracks[0])["music_flamingo_model"] == "gguf_standin-random"

    provs = [prov(t) for t in tracks]
    # One llama-server for the whole run: the model loaded once, on whichever track came first.
    assert sorted(p["model_loads"] for p in provs) == [0, 0, 1]
    assert {p["server_starts"] for p in provs} == {1}
    for p in provs:
        assert p["mode"] == "served" and p["audio_encodes"] == 1
        questions = [p["questions"][k] for k in KEYS]
        if parallel == 1:
            assert questions[0]["audio_encoded"] and questions[0]["prompt_tokens"] >= 750
        else:
            assert not questions[0]["audio_encoded"] and questions[0]["cached_tokens"] >= 750
        for later in questions[1:]:
            # The audio (750 tokens per 30 s window) comes from the server's prompt cache.
            assert not later["audio_encoded"]
            assert later["cached_tokens"] >= 750 and later["prompt_tokens"] < 100
        assert p["prompt_tokens_evaluated"] < pp["prompt_tokens_evaluated"] / 3


@pytest.mark.parametrize("parallel", [5, 1])
def test_tracks_in_flight_together_give_the_same_text_and_each_audio_is_encoded_once(tmp_path, standins,
                                                                                     small_prompts, parallel):
    """tracks_per_call = 2: two tracks at once on one llama-server, each in its own group of slots
    (5 x 2 slots, or 1 x 2 with the questions in series): the same texts as one track at a time, each
    track's audio encoded once. A track that fails to decode beside them leaves no call waiting."""
    data = dataset_of(tmp_path, count=3)
    for i, seconds in ((1, 7.0), (2, 33.0)):  # lengths of their own: one and two audio windows
        write_track(data, f"Track {i}", sine(220.0 * (i + 1), seconds))
    broken = data / "Broken"
    broken.mkdir()
    (broken / "full_mix.flac").write_bytes(b"fLaC" + b"\x00" * 100)
    tracks = sorted(p for p in data.iterdir() if p.is_dir() and p != broken)
    opts = options(standins["random"], small_prompts, temperature=0, parallel=parallel)
    run_engine(data, only=[MODULE], module_options=opts)
    alone = {t.name: features(t) for t in tracks}
    assert {prov(t)["tracks_per_call"] for t in tracks} == {1}

    events, _ = run_engine(data, only=[MODULE], overwrite=[MODULE],
                           module_options={MODULE: {**opts[MODULE], "tracks_per_call": 2}})
    failed = {e.track: e.kind for e in events_named(events, "module_failed")}
    assert failed == {"Broken": "bad_input"}
    assert {t.name: features(t) for t in tracks} == alone
    provs = [prov(t) for t in tracks]
    assert sorted(p["tracks_per_call"] for p in provs) == [1, 2, 2]
    assert {p["server_slots"] for p in provs} == {2 * parallel} and {p["server_starts"] for p in provs} == {1}
    assert sorted(p["model_loads"] for p in provs) == [0, 0, 1]
    for p in provs:
        assert p["audio_encodes"] == 1 and p["question_batching"]["batch_size"] == parallel
        windows = 1 + (p["audio_seconds_heard"] > 30)
        questions = [p["questions"][k] for k in KEYS]
        encoded = [q["audio_encoded"] for q in questions]
        assert encoded == ([False] * 5 if parallel > 1 else [True] + [False] * 4)
        assert all(q["cached_tokens"] >= 750 * windows for q in questions[1:])
        if parallel > 1:
            assert p["question_batching"]["warmup"]["prompt_tokens"] >= 750 * windows
        if p["tracks_per_call"] == 2:  # the decode rate is this track's own tokens, in a batch of both tracks
            assert p["decode"]["tracks_in_batch"] == 2 and p["decode"]["batch_size"] == 2 * parallel
            assert p["decode"]["generated_tokens"] == p["generated_tokens"]


def test_the_server_is_sized_once_for_the_longest_track_of_the_plan(tmp_path, standins, small_prompts):
    """Tracks in the plan's order grow longer (1, 2, then 3 audio windows): the context is sized for
    the longest from the start, so llama-server (the whole model) is loaded once, not once per new
    longest track."""
    root = tmp_path / "growing"
    for name, seconds in (("a short", 4.0), ("b middle", 35.0), ("c long", 62.0)):
        write_track(root, name, sine(330.0, seconds))
    events, _ = run_engine(root, only=[MODULE], jobs=1,
                           module_options=options(standins["random"], small_prompts, temperature=0, parallel=1))
    assert not events_named(events, "module_failed"), events_named(events, "module_failed")
    provs = [prov(root / name) for name in ("a short", "b middle", "c long")]
    assert [p["model_loads"] for p in provs] == [1, 0, 0]
    assert [p["server_starts"] for p in provs] == [1, 1, 1]
    assert {p["server_ctx"] for p in provs} == {provs[-1]["server_ctx"]}
    assert provs[0]["server_ctx_sized_for_s"] == pytest.approx(62.0, abs=0.01)
    assert provs[-1]["audio_seconds_heard"] == pytest.approx(62.0, abs=0.01)


def test_scripted_answers_keep_newlines_stop_early_and_are_normalised(tmp_path, standins, small_prompts):
    data = dataset_of(tmp_path, count=1, seconds=3.0)
    track = next(p for p in data.iterdir() if p.is_dir())
    prompts = small_prompts.read_text()
    for limit in ("12", "9", "8", "6", "10"):
        prompts = prompts.replace(f"max_tokens = {limit}\n", "max_tokens = 60\n")
    small_prompts.write_text(prompts)
    opts = options(standins["scripted"], small_prompts, top_p=1.0, seed=3)
    run_engine(data, only=[MODULE], module_options=opts)
    served, p = features(track), prov(track)
    texts = list(served.values())
    assert any("\n" in t for t in texts), texts
    # The stand-in writes a curly apostrophe; the stored text has the ASCII one.
    assert not any("\u2019" in t for t in texts) and any("'s" in t for t in texts), texts
    stopped = [q for q in p["questions"].values() if q["finish_reason"] == "stop"]
    assert stopped and all(q["generated_tokens"] < 60 for q in stopped)

    run_engine(data, only=[MODULE], overwrite=[MODULE], module_options={MODULE: {**opts[MODULE], "mode": "per_prompt"}})
    assert features(track) == served  # same seed, same sampler, same text


def test_an_empty_answer_is_null_with_the_reason(tmp_path, standins, small_prompts):
    data = dataset_of(tmp_path, count=1, seconds=2.0)
    track = next(p for p in data.iterdir() if p.is_dir())
    for mode in ("served", "per_prompt"):
        run_engine(data, only=[MODULE], overwrite=[MODULE],
                   module_options={MODULE: {**options(standins["silent"], small_prompts)[MODULE], "mode": mode}})
        assert features(track) == {k: None for k in KEYS}
        assert sorted(prov(track)["empty_answers"]) == sorted(KEYS)


def test_other_formats_and_awkward_names(tmp_path, standins, small_prompts):
    root = tmp_path / "odd"
    signal = sine(330.0, 3.0)
    ogg = write_track(root, "Artist, \"Quoted\" - Title\u2019s (ogg)", signal, fmt="ogg")
    wav = write_track(root, "a,b,c", signal, fmt="wav")
    m4a_dir = root / "Comma, in m4a"
    m4a_dir.mkdir()
    soundfile.write(tmp_path / "src.wav", signal, 44100)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(tmp_path / "src.wav"), "-c:a", "aac",
                    str(m4a_dir / "full_mix.m4a")], check=True)
    opts = options(standins["random"], small_prompts, temperature=0)
    events, _ = run_engine(root, only=[MODULE], module_options=opts)
    assert not events_named(events, "module_failed"), events_named(events, "module_failed")
    for folder in (ogg, wav, m4a_dir):
        assert all(features(folder).values())


def test_missing_model_wrong_projector_and_unreadable_audio(tmp_path, standins, small_prompts):
    data = dataset_of(tmp_path, count=1, seconds=2.0)
    bad = data / "Broken"
    bad.mkdir()
    (bad / "full_mix.flac").write_bytes(b"fLaC" + b"\x00" * 100)
    model, mmproj = standins["random"]

    def failures(**opts):
        events, _ = run_engine(data, only=[MODULE], overwrite=[MODULE],
                               module_options={MODULE: {**options(standins["random"], small_prompts)[MODULE], **opts}})
        return {e.track.split("/")[-1] if "/" in e.track else e.track: (e.kind, e.message)
                for e in events_named(events, "module_failed")}

    gone = failures(model_file=str(tmp_path / "nothere.gguf"))
    assert {k for k, _ in gone.values()} <= {"model_missing", "bad_input"}
    assert any(kind == "model_missing" and "nothere.gguf" in msg for kind, msg in gone.values()), gone

    for mode in ("served", "per_prompt"):
        wrong = failures(mmproj_file=str(model), mode=mode)  # a language model is no projector
        kinds = [kind for kind, msg in wrong.values() if "projector" in msg]
        assert kinds and set(kinds) == {"model_missing"}, wrong

    # The unreadable file fails as bad input; the good track beside it is still described.
    ok = failures()
    assert [kind for kind, _ in ok.values()] == ["bad_input"]
    assert all(features(data / "Track 0").values())


def test_llama_reports_unreadable_audio_as_bad_input(tmp_path, standins, llama_bin_dir):
    from backends.flamingo.llama_cli import Sampling, mtmd_cli_command, run_mtmd_cli
    from backends.protocol import BadInput

    model, mmproj = standins["random"]
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    cmd = mtmd_cli_command(llama_bin_dir / "llama-mtmd-cli", model=model, mmproj=mmproj, audio=junk,
                           prompt="hi", sampling=Sampling(0.0, 1.0, 1, 4), ctx_size=1024, gpu_layers=0, threads=None)
    with pytest.raises(BadInput, match="junk.wav"):
        run_mtmd_cli(cmd, audio_label=str(junk))


def test_build_is_reused_and_described(llama_bin_dir):
    from tui.install.llama import describe, find_binaries, plan_for

    info = find_binaries("cpu")
    assert info["stamp"]["key"] == plan_for("cpu").key
    assert "-DGGML_NATIVE=OFF" in info["stamp"]["flags"] and "-DLLAMA_CURL=OFF" in info["stamp"]["flags"]
    done = subprocess.run([str(ROOT / "bin" / "build-llama"), "--variant", "cpu"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "reusing" in done.stdout
    assert "llama-cpp-python 0.3.36" in describe("cpu")
    # Static build: no libllama/libggml shared objects to go missing.
    ldd = subprocess.run(["ldd", str(llama_bin_dir / "llama-server")], capture_output=True, text=True).stdout
    assert "libllama" not in ldd and "libggml" not in ldd and "libssl" not in ldd and "libcurl" not in ldd


def test_server_never_talks_to_another_server_on_its_port(standins, llama_bin_dir, monkeypatch):
    """A free port can be taken by another llama-server before ours binds it (parallel workers,
    parallel tests): ours must notice that the answers are not its own and move to another port,
    instead of sending its questions to a server with another model."""
    import http.server
    import threading

    from backends.flamingo import llama_server

    class Decoy(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"data": [{"id": "someone-elses-model"}]}' if self.path == "/v1/models" else b'{"status": "ok"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    decoy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Decoy)
    threading.Thread(target=decoy.serve_forever, daemon=True).start()
    ports = [decoy.server_address[1]]
    real_free_port = llama_server._free_port
    monkeypatch.setattr(llama_server, "_free_port", lambda: ports.pop(0) if ports else real_free_port())
    model, mmproj = standins["random"]
    server = llama_server.LlamaServer(llama_bin_dir / "llama-server", model=model, mmproj=mmproj,
                                      ctx_size=1024, gpu_layers=0)
    try:
        assert server.port != decoy.server_address[1]
        assert server._answers_as_ours()
    finally:
        server.close()
        decoy.shutdown()


def test_provenance_device_says_where_the_layers_ran():
    from backends.extractors.flamingo_gguf import ran_on

    assert ran_on("cpu", 99) == "cpu"  # a CPU build ignores --n-gpu-layers
    assert ran_on("rocm", 99) == "rocm" and ran_on("cuda", 20) == "cuda"
    assert ran_on("cuda", 0) == "cpu" and ran_on(None, 99) == "cpu"


def _logprobs(srv, wav: bytes | str, question: str, tokens: int, slot: int | None = None,
              cache_prompt: bool = True) -> list[tuple[str, float]]:
    """The greedy answer's tokens with their log-probabilities, from llama-server itself (``wav``:
    the clip's bytes, or its URL in the server's media folder)."""
    import json
    import urllib.request

    from backends.flamingo.llama_cli import Sampling, sampler_json
    from backends.flamingo.llama_server import chat_messages

    body = {"messages": chat_messages(wav, question), "max_tokens": tokens,
            **sampler_json(Sampling(0.0, 1.0, 1, tokens)), "cache_prompt": cache_prompt, "stream": False,
            "logprobs": True, "top_logprobs": 1, "ignore_eos": True, **({"id_slot": slot} if slot is not None else {})}
    request = urllib.request.Request(srv._url("/v1/chat/completions"), data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as resp:
        return [(c["token"], c["logprob"]) for c in json.loads(resp.read())["choices"][0]["logprobs"]["content"]]


def test_one_slot_and_parallel_slots_give_the_same_log_probabilities(tmp_path, standins, small_prompts):
    """Not only the same greedy text on these tracks: the same numbers, so no near-tie can flip.

    The module's settings for one slot and for five (the attention kernels included: flash attention
    on against off moves log-probabilities by ~1e-3, more than the gap between the stand-in's top two
    tokens at some steps) give one question's log-probabilities to within float rounding, whether the
    question is decoded alone or in a batch of five."""
    import io

    from backends.extractors.flamingo_gguf import FlamingoGGUF, flash_attn_of
    from backends.flamingo.llama_cli import context_size, tool_path
    from backends.flamingo.llama_server import LlamaServer

    model, mmproj = standins["random"]
    settings = {p: FlamingoGGUF()._settings({"model_file": str(model), "mmproj_file": str(mmproj),
                                             "prompts_file": str(small_prompts), "parallel": p}) for p in (1, 5)}
    buf = io.BytesIO()
    soundfile.write(buf, sine(330.0, 4.0, rate=16000, channels=1), 16000, format="WAV", subtype="FLOAT")
    wav = buf.getvalue()
    questions = [p.text for p in settings[5]["prompts"].prompts]
    answers = {}
    for parallel, s in settings.items():
        srv = LlamaServer(tool_path("llama-server"), model=model, mmproj=mmproj, ctx_size=context_size(4.0, 24),
                          gpu_layers=0, parallel=parallel, flash_attn=flash_attn_of(s))
        try:
            if parallel == 1:
                answers[1] = [_logprobs(srv, wav, q, 24) for q in questions]
            else:  # all five at once, each in its own slot: decoded as one batch
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(5) as pool:
                    answers[5] = list(pool.map(lambda iq: _logprobs(srv, wav, iq[1], 24, slot=iq[0]),
                                               enumerate(questions)))
        finally:
            srv.close()
    for alone, batched in zip(answers[1], answers[5]):
        assert [t for t, _ in alone] == [t for t, _ in batched]
        assert max(abs(a - b) for (_, a), (_, b) in zip(alone, batched)) < 1e-4


def test_the_server_reads_each_clip_from_its_media_folder_once_linked_and_leaves_nothing(
        tmp_path, standins, small_prompts, monkeypatch):
    """Every request about a clip names it by URL instead of carrying it (a 7.5-minute track would be
    38 MB of base64 in each of its six requests), answers as the base64 request does, and the
    folder is empty after each track, whether it was answered or its audio was unreadable."""
    import urllib.request

    from backends.flamingo import llama_server
    from backends.flamingo.llama_cli import Sampling, context_size, tool_path
    from backends.protocol import BackendError

    wav = tmp_path / "clip.wav"
    soundfile.write(wav, sine(330.0, 4.0, rate=16000, channels=1), 16000, format="WAV", subtype="FLOAT")
    model, mmproj = standins["random"]
    srv = llama_server.LlamaServer(tool_path("llama-server"), model=model, mmproj=mmproj,
                                   ctx_size=context_size(4.0, 12), gpu_layers=0, parallel=5, flash_attn="off")
    bodies, seen = [], []
    real_urlopen = urllib.request.urlopen

    def urlopen(request, *args, **kwargs):
        if getattr(request, "full_url", "").endswith("/v1/chat/completions"):
            bodies.append(len(request.data))
            seen.append(sorted((p.name, p.stat().st_ino) for p in srv.media_dir.iterdir()))
        return real_urlopen(request, *args, **kwargs)

    monkeypatch.setattr(llama_server.urllib.request, "urlopen", urlopen)
    questions = [("Describe it.", Sampling(0.0, 1.0, 1, 12)), ("Tempo?", Sampling(0.0, 1.0, 1, 8))]
    try:
        answers, _ = srv.ask_all(questions, audio_wav=wav, audio_label="clip.wav", ignore_eos=True)
        assert len(bodies) == 3 and max(bodies) < 2000 < wav.stat().st_size  # warm-up and two questions
        assert all(len(files) == 1 for files in seen) and len(set(map(tuple, seen))) == 1
        if wav.stat().st_dev == srv.media_dir.stat().st_dev:  # one file system: linked, not copied
            assert seen[0][0][1] == wav.stat().st_ino
        assert sorted(srv.media_dir.iterdir()) == []
        monkeypatch.setattr(llama_server.urllib.request, "urlopen", real_urlopen)
        inline = [_logprobs(srv, wav.read_bytes(), q, s.max_tokens) for q, s in questions]
        assert [a.text for a in answers] == ["".join(t for t, _ in one) for one in inline]

        junk = tmp_path / "junk.wav"
        junk.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
        with pytest.raises(BackendError, match="junk.wav"):
            srv.ask_all(questions, audio_wav=junk, audio_label=str(junk))
        assert sorted(srv.media_dir.iterdir()) == []
        assert srv.alive()
    finally:
        srv.close()


def _mel_reuse(tmp_path, standins, order: str) -> list[tuple[list[float], int]]:
    """Clips "a" and "b" (4 s each) asked about in ``order`` with the prompt cache off, so each
    request encodes the audio again from its spectrogram: per request, the answer's log-probabilities
    and how often the server logged the spectrogram as reused."""
    from backends.flamingo.llama_cli import context_size, tool_path
    from backends.flamingo.llama_server import LlamaServer

    clips = {}
    for name, freq in (("a", 330.0), ("b", 550.0)):
        clips[name] = tmp_path / f"{name}.wav"
        soundfile.write(clips[name], sine(freq, 4.0, rate=16000, channels=1), 16000, format="WAV", subtype="FLOAT")
    model, mmproj = standins["random"]
    srv = LlamaServer(tool_path("llama-server"), model=model, mmproj=mmproj, ctx_size=context_size(4.0, 8),
                      gpu_layers=0, flash_attn="off")

    def ask(url: str) -> tuple[list[float], int]:
        srv.new_log()
        answer = _logprobs(srv, url, "Describe it.", 8, cache_prompt=False)
        return [logprob for _, logprob in answer], srv.new_log().count("mel spectrogram reused")

    try:
        with srv.clip_file(clips["a"]) as a, srv.clip_file(clips["b"]) as b:
            return [ask({"a": a, "b": b}[name]) for name in order]
    finally:
        srv.close()


def test_a_clip_asked_about_again_reuses_its_mel_spectrogram_and_hears_the_same(tmp_path, standins):
    """mirdeck's llama.cpp patch: the questions after a clip's first reuse its mel spectrogram
    (7.5 minutes of audio: ~0.75 s of CPU per request otherwise), and clip A asked after clip B
    gets A's own log-probabilities, not B's."""
    first_a, second_a, first_b, third_a = _mel_reuse(tmp_path, standins, "aaba")
    assert [reused for _, reused in (first_a, second_a, first_b, third_a)] == [0, 1, 0, 1]
    assert first_b[0] != first_a[0]
    assert max(abs(x - y) for x, y in zip(first_a[0], third_a[0])) < 1e-6


def test_the_mel_spectrogram_cache_keeps_within_its_budget(tmp_path, standins, monkeypatch):
    """A 4 s clip's spectrogram (one 30 s window, 1.5 MB) is over a 1 MB budget: the newest is still
    kept, and the next clip pushes it out, so the clip asked about a third time is computed again."""
    monkeypatch.setenv("MIRDECK_MEL_CACHE_MB", "1")
    asked = _mel_reuse(tmp_path, standins, "aaba")
    assert [reused for _, reused in asked] == [0, 1, 0, 0]
    assert max(abs(x - y) for x, y in zip(asked[0][0], asked[3][0])) < 1e-6
