"""Music Flamingo (GGUF, llama.cpp): five text descriptions of each track.

Keys: ``music_flamingo_full``, ``_technical``, ``_genre_mood``, ``_instrumentation``, ``_structure``
(the model's answer to each question of the prompts file, normalised for T5 tokenizers; null when the
model answered nothing, with the reason in provenance) and ``music_flamingo_model`` (e.g. ``gguf_Q8_0``).

Two modes (option ``mode``):
- ``served`` (default): one ``llama-server`` per worker; the model loads once per run and each track's
  audio is encoded once, the other questions reuse it from the server's prompt cache.
- ``per_prompt``: one ``llama-mtmd-cli`` run per question (model load + audio encode every time).

The audio handed to llama.cpp is always a temporary 16 kHz mono WAV written from the engine's decoded
PCM, so the source format (m4a, ogg, ...) and awkward names (commas, quotes) never reach llama.cpp.

Options (profile ``[backend.flamingo_gguf.options]`` or per run): ``mode``, ``quant`` (Q8_0, Q6_K,
IQ3_M), ``model_file`` + ``mmproj_file`` (explicit paths) with ``model_label``, ``prompts_file``,
any [sampling] key of the prompts file (``temperature``, ``top_k``, ``top_p``, ``min_p``,
``repeat_penalty``, ``repeat_last_n``, ``seed``), ``gpu_layers``, ``threads``, ``ctx_size`` (tokens per
slot, at least), ``parallel`` (served mode: llama-server slots, 1 to 5; default 5: the five questions
decoded at once, each slot holding its own copy of the audio prefix; 1: one after another),
``flash_attn`` (auto, on, off; default off in every mode, see ``PARALLEL_FLASH_ATTN``),
``tracks_per_call`` (served mode: tracks in flight on the server at once, each in its own group of
``parallel`` slots with its audio encoded once; default 4 on a GPU, capped by the profile's VRAM
budget, and 1 on a CPU-only profile; the same text as one track at a time).
"""
from __future__ import annotations

from backends.flamingo.prompts import FEATURE_KEYS, MODEL_KEY
from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track


def _models_for(options: dict) -> tuple[str, ...]:
    """The manifest models a run with these options loads: none with explicit files
    (``model_file``), else the chosen quantisation's weights and the projector."""
    if options.get("model_file"):
        return ()
    quant = options.get("quant", "Q8_0")
    return (QUANTS[quant][0] if quant in QUANTS else QUANTS["Q8_0"][0], MMPROJ[0])


SPEC = BackendSpec(
    name="flamingo_gguf",
    version="1",
    description="Music Flamingo (GGUF via llama.cpp): five text descriptions per track",
    keys=(*FEATURE_KEYS, MODEL_KEY),
    audio=(AudioNeed("mix", 16000),),
    models=("music_flamingo_q8_0", "music_flamingo_mmproj"),
    models_for=_models_for,
    device="gpu",
    vram_gb=10.0,
    option_defaults={"quant": "Q8_0", "mode": "served"},
    # parallel and tracks_per_call: the same text in one slot or many (flash attention off in every
    # mode, PARALLEL_FLASH_ATTN).
    runtime_options=("gpu_layers", "threads", "ctx_size", "parallel", "flash_attn", "tracks_per_call"),
    # Several tracks in flight on one server, each in its own five slots (GPU default; capped by the
    # VRAM budget). A further track holds five copies of its audio prefix's KV cache: Qwen2.5-7B's
    # 57 KB per token (f16) x (15 windows x 750 + 500) tokens x 5 slots ~ 3.4 GB for 7.5 minutes.
    tracks_per_call=4,
    vram_per_extra_track_gb=3.5,
    timeout_s=3600,
    # llama-server's context is sized once for the run's longest track (a restart reloads the model).
    sized_by_longest_track=True,
)

SAMPLE_RATE = 16000
# Quantisations users run, with their manifest names and files.
QUANTS = {
    "Q8_0": ("music_flamingo_q8_0", "music-flamingo-hf.Q8_0.gguf"),
    "Q6_K": ("music_flamingo_q6_k", "music-flamingo-hf.i1-Q6_K.gguf"),
    "IQ3_M": ("music_flamingo_iq3_m", "music-flamingo-hf.i1-IQ3_M.gguf"),
}
MMPROJ = ("music_flamingo_mmproj", "music-flamingo-hf.mmproj-f16.gguf")
MODES = ("served", "per_prompt")
FLASH_ATTN = ("auto", "on", "off")
# The same attention kernels in every mode, so parallel slots, one slot and llama-mtmd-cli write the
# same text. With flash attention off, five slots decoded as one batch give one slot's log-probabilities
# (within 1e-6, CPU build); with it on they differ by up to 3e-2 and flip greedy choices. Flash attention
# on against off also differs (~1e-3, enough to flip a near-tie), so the one-slot and per-question paths
# run with it off too: before, they ran llama.cpp's default (auto: on) and matched the parallel slots
# only where no near-tie fell within 1e-3 (docs/performance.md). ``flash_attn = "auto"`` trades that for speed.
PARALLEL_FLASH_ATTN = "off"


def flash_attn_of(settings: dict) -> str:
    """The flash attention setting llama.cpp runs with: the option's, else the same for every mode."""
    return settings["flash_attn"] or PARALLEL_FLASH_ATTN


def ran_on(variant: str | None, gpu_layers: int) -> str:
    """Where the layers ran: the GPU back end of the llama.cpp build when layers were offloaded to it,
    else the CPU (a CPU build ignores ``--n-gpu-layers``)."""
    if gpu_layers > 0 and variant in ("cuda", "rocm", "vulkan", "metal"):
        return variant
    return "cpu"


class FlamingoGGUF(Extractor):
    def __init__(self):
        super().__init__(device="cpu")
        self.server = None
        self.server_starts = 0

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    # -- configuration -------------------------------------------------------------------------
    def _settings(self, options: dict) -> dict:
        import os
        from pathlib import Path

        from backends import models
        from backends.flamingo.prompts import SAMPLING_KEYS, load_prompts, prompts_path
        from backends.protocol import BackendError, ModelMissing

        mode = options.get("mode", "served")
        if mode not in MODES:
            raise BackendError(f"flamingo_gguf: option mode must be one of {', '.join(MODES)}, not {mode!r}")
        if options.get("model_file"):
            model = Path(options["model_file"])
            mmproj = Path(options.get("mmproj_file") or "")
            for path in (model, mmproj):
                if not path.is_file():
                    raise ModelMissing(f"flamingo_gguf: model file {path} does not exist "
                                       "(options model_file / mmproj_file)")
            label = options.get("model_label") or f"gguf_{model.stem}"
        else:
            quant = options.get("quant", "Q8_0")
            if quant not in QUANTS:
                raise BackendError(f"flamingo_gguf: option quant must be one of {', '.join(QUANTS)}, not {quant!r}")
            model = models.require(*QUANTS[quant])
            mmproj = models.require(*MMPROJ)
            label = f"gguf_{quant}"
        env_int = lambda name, default: int(os.environ.get(name) or default)  # noqa: E731
        prompts = load_prompts(prompts_path(options), overrides={k: options.get(k) for k in SAMPLING_KEYS})
        flash = options.get("flash_attn")
        if flash is not None and flash not in FLASH_ATTN:
            raise BackendError(f"flamingo_gguf: option flash_attn must be one of {', '.join(FLASH_ATTN)}, "
                               f"not {flash!r}")
        return {"mode": mode, "flash_attn": flash, "model": model, "mmproj": mmproj, "label": label, "prompts": prompts,
                "gpu_layers": int(options.get("gpu_layers", env_int("MIRDECK_LLAMA_GPU_LAYERS", 0))),
                "threads": int(options.get("threads", env_int("MIRDECK_LLAMA_THREADS", 0))) or None,
                "ctx_min": int(options.get("ctx_size", env_int("MIRDECK_LLAMA_CTX_SIZE", 0))),
                "parallel": _parallel(options.get("parallel", env_int("MIRDECK_LLAMA_PARALLEL", len(prompts.prompts))),
                                      len(prompts.prompts))}

    # -- tracks ---------------------------------------------------------------------------------
    def process(self, track: Track) -> Result:
        outcome = self.process_batch([track])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def process_batch(self, tracks: list[Track]) -> list[Result | BaseException]:
        """One track, or several (``tracks_per_call``) in flight on one llama-server at once, each in
        its own group of slots; per_prompt mode runs them one after another."""
        import os
        import tempfile

        from backends.flamingo.llama_cli import build_stamp, tool_path

        s = self._settings(tracks[0].options)
        if s["mode"] != "served" or any(t.options != tracks[0].options for t in tracks[1:]):
            return [self._one_per_prompt(t) if s["mode"] != "served" else _outcome(self.process, t) for t in tracks]
        tool = tool_path("llama-server")
        build = build_stamp(tool)
        self.device = ran_on(build.get("llama_variant"), s["gpu_layers"])
        self.model_provenance = self._shared_provenance(s, build)
        out: list[Result | BaseException | None] = [None] * len(tracks)
        with tempfile.TemporaryDirectory(prefix="mirdeck-flamingo-") as tmp:
            clips = []  # (index, track, wav path, duration)
            for i, track in enumerate(tracks):
                try:
                    data, _ = track.audio("mix", SAMPLE_RATE)
                    # A fixed safe name: the track's own name (commas, quotes) never reaches llama.cpp.
                    wav = os.path.join(tmp, f"audio-{i}.wav")
                    _write_mono_wav(wav, data)
                    clips.append((i, track, wav, data.shape[0] / SAMPLE_RATE))
                except Exception as exc:  # this track's own failure (unreadable audio); the others go on
                    out[i] = exc
            if clips:
                served = self._served(clips, tool, s)
                for (i, track, _, duration), (answers, stats) in zip(clips, served):
                    out[i] = answers if isinstance(answers, BaseException) else \
                        self._result(s, answers, {"audio_seconds_heard": round(duration, 3), **stats})
        return [o if o is not None else RuntimeError("no answer") for o in out]

    def _one_per_prompt(self, track: Track) -> Result | BaseException:
        import os
        import tempfile

        from backends.flamingo.llama_cli import build_stamp, tool_path

        try:
            s = self._settings(track.options)
            tool = tool_path("llama-mtmd-cli")
            data, _ = track.audio("mix", SAMPLE_RATE)
            duration = data.shape[0] / SAMPLE_RATE
            with tempfile.TemporaryDirectory(prefix="mirdeck-flamingo-") as tmp:
                wav = os.path.join(tmp, "audio.wav")
                _write_mono_wav(wav, data)
                answers, stats = self._per_prompt(track, tool, s, wav, duration)
            build = build_stamp(tool)
            self.device = ran_on(build.get("llama_variant"), s["gpu_layers"])
            self.model_provenance = self._shared_provenance(s, build)
            return self._result(s, answers, {"audio_seconds_heard": round(duration, 3), **stats})
        except Exception as exc:
            return exc

    def _shared_provenance(self, s: dict, build: dict) -> dict:
        """What every track of the run shares: weights, mode, prompts, the llama.cpp build."""
        return {"model": s["label"], "model_file": str(s["model"]), "mmproj_file": str(s["mmproj"]),
                "mode": s["mode"], "gpu_layers": s["gpu_layers"], **s["prompts"].provenance(), **build}

    @staticmethod
    def _result(s: dict, answers: dict, stats: dict) -> Result:
        """One track's keys and its own provenance (llama.cpp hears the whole track: no maximum audio
        length, unlike transformers' processor)."""
        from backends.flamingo.prompts import KEY_PREFIX, normalise_text

        features, empty = {}, []
        for name, raw in answers.items():
            text = normalise_text(raw)
            features[KEY_PREFIX + name] = text or None
            if not text:
                empty.append(name)
        features[MODEL_KEY] = s["label"]
        return Result(features, provenance={
            **stats, **({"empty_answers": empty, "empty_reason": "the model stopped before writing any text"}
                        if empty else {})})

    def _per_prompt(self, track, tool, s, wav, duration):
        from backends.flamingo.decode_rate import decode_record, llama_spans
        from backends.flamingo.llama_cli import context_size, mtmd_cli_command, run_mtmd_cli

        prompts = s["prompts"]
        answers, per_question = {}, {}
        for i, prompt in enumerate(prompts.prompts):
            track.progress(i / len(prompts.prompts), prompt.name)
            sampling = prompts.sampling(prompt)
            ctx = max(s["ctx_min"], context_size(duration, prompt.max_tokens))
            cmd = mtmd_cli_command(tool, model=s["model"], mmproj=s["mmproj"], audio=wav, prompt=prompt.text,
                                   sampling=sampling, ctx_size=ctx, gpu_layers=s["gpu_layers"],
                                   threads=s["threads"], system=prompts.system,
                                   flash_attn=flash_attn_of(s))
            text, log, _ = run_mtmd_cli(cmd, audio_label=track.mix.path)
            answers[prompt.name] = text
            per_question[prompt.name] = log.provenance()
        totals = _sum(per_question, ("audio_slices", "prompt_tokens", "generated_tokens"))
        return answers, {"model_loads": len(prompts.prompts), "audio_encodes": len(prompts.prompts),
                         "flash_attn": flash_attn_of(s),
                         "prompt_tokens_evaluated": totals["prompt_tokens"],
                         "generated_tokens": totals["generated_tokens"],
                         "decode": decode_record(llama_spans(per_question.values()), together=False, batch_size=1),
                         "questions": per_question}

    def _server_for(self, tracks: list, tool, s: dict, need: int, size_for: float, longest: int):
        """The running server when it fits these tracks, else a new one. Its slots: one group per
        track of the run's calls (``Track.run["tracks_per_call"]``), each of ``parallel`` slots."""
        from backends.flamingo.llama_cli import context_size
        from backends.flamingo.llama_server import LlamaServer

        groups = max(len(tracks), int(tracks[0].run.get("tracks_per_call") or 1))
        slots = s["parallel"] * groups
        flash = flash_attn_of(s)
        key = (str(s["model"]), str(s["mmproj"]), s["gpu_layers"], s["threads"], s["parallel"], flash)
        srv = self.server
        if srv is not None and (not srv.alive() or srv.ctx_size < need or srv.key != key
                                or srv.parallel < s["parallel"] * len(tracks)):
            srv.close()  # a track longer than the probe said, other weights or a dead server: start again
            srv = self.server = None
        if srv is not None:
            return srv, False
        tracks[0].progress(0.0, "loading model")
        srv = LlamaServer(tool, model=s["model"], mmproj=s["mmproj"],
                          ctx_size=max(need, context_size(size_for, longest)),
                          gpu_layers=s["gpu_layers"], threads=s["threads"], parallel=slots, flash_attn=flash)
        srv.key = key
        self.server = srv
        self.server_starts += 1
        return srv, True

    def _served(self, clips, tool, s):
        """Every clip's (answers, stats), or (the exception it failed with, None).

        The server's context is sized for the run's longest track when the engine could tell
        (``Track.run["longest_mix_seconds"]``), so a longer track later in the run needs no restart."""
        from pathlib import Path

        from backends.flamingo.decode_rate import decode_record, llama_spans
        from backends.flamingo.llama_cli import TOKENS_PER_WINDOW, audio_windows, context_size

        prompts = s["prompts"]
        longest = max(p.max_tokens for p in prompts.prompts)
        tracks = [track for _, track, _, _ in clips]
        need = max(s["ctx_min"], *(context_size(d, longest) for _, _, _, d in clips))
        size_for = max(max(d for _, _, _, d in clips), *(float(t.run.get("longest_mix_seconds") or 0.0)
                                                          for t in tracks))
        srv, loaded_now = self._server_for(tracks, tool, s, need, size_for, longest)
        per_track = s["parallel"] > 1
        for track in tracks:
            track.progress(0.05, "questions in parallel slots" if per_track else "questions")
        questions = [(p.text, prompts.sampling(p)) for p in prompts.prompts]
        replies_of = srv.ask_tracks([(questions, Path(wav), track.mix.path) for _, track, wav, _ in clips],
                                    slots_per_track=s["parallel"], system=prompts.system)
        out = []
        for g, ((_, track, _, duration), replied) in enumerate(zip(clips, replies_of)):
            if isinstance(replied, BaseException):
                out.append((replied, None))
                continue
            replies, batching = replied
            audio_tokens = audio_windows(duration) * TOKENS_PER_WINDOW
            answers, per_question = {}, {}
            for prompt, reply in zip(prompts.prompts, replies):
                answers[prompt.name] = reply.text
                per_question[prompt.name] = {
                    "prompt_tokens": reply.prompt_tokens, "cached_tokens": reply.cached_tokens,
                    "generated_tokens": reply.generated_tokens, "prompt_eval_ms": round(reply.prompt_ms, 2),
                    "eval_ms": round(reply.generate_ms, 2), "finish_reason": reply.finish_reason,
                    # The server's own count: fewer cached prompt tokens than the audio holds means
                    # the audio was (re-)encoded for this question.
                    "audio_encoded": reply.cached_tokens < audio_tokens}
            totals = _sum(per_question, ("prompt_tokens", "generated_tokens", "cached_tokens"))
            parallel = bool(batching)
            out.append((answers, {
                "model_loads": 1 if loaded_now and g == 0 else 0,
                "server_starts": self.server_starts, "server_load_s": round(srv.load_seconds, 3),
                "server_ctx": srv.ctx_size, "server_ctx_sized_for_s": round(size_for, 3),
                "server_slots": srv.parallel, "tracks_in_flight": len(clips),
                "question_batching": {
                    "mode": "parallel llama-server slots, prefix copied" if parallel else "sequential",
                    "batch_size": s["parallel"] if parallel else 1, **batching,
                    "flash_attn": srv.flash_attn or "auto"},
                # The warm-up included: the one request that encodes the audio for every slot.
                "audio_encodes": int(parallel and batching["warmup"]["cached_tokens"] < audio_tokens)
                + sum(1 for q in per_question.values() if q["audio_encoded"]),
                # The warm-up's prompt (the audio, once) is counted with the questions' own tokens.
                "prompt_tokens_evaluated": totals["prompt_tokens"]
                + (batching["warmup"]["prompt_tokens"] if parallel else 0),
                "prompt_tokens_cached": totals["cached_tokens"],
                "generated_tokens": totals["generated_tokens"],
                # This track's own tokens over its share of the call's decoding: the server decoded
                # the questions of every track in flight together (batch_size: all their slots).
                "decode": decode_record(llama_spans(per_question.values()), together=parallel,
                                        batch_size=s["parallel"] * len(clips) if parallel else len(clips),
                                        tracks_in_batch=len(clips)),
                "questions": per_question}))
        return out


def _outcome(process, track):
    try:
        return process(track)
    except Exception as exc:
        return exc


def _parallel(value, questions: int) -> int:
    from backends.protocol import BackendError

    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= questions:
        raise BackendError(f"flamingo_gguf: option parallel must be an integer from 1 (one question after "
                           f"another) to {questions} (all at once), not {value!r}")
    return value


def _sum(per_question: dict, fields) -> dict:
    return {f: sum(int(q.get(f) or 0) for q in per_question.values()) for f in fields}


def _write_mono_wav(path: str, data) -> None:
    """16 kHz mono float WAV: the channel mean, as llama.cpp would downmix it itself."""
    import numpy as np
    import soundfile

    mono = data.mean(axis=1, dtype=np.float32) if data.ndim == 2 else np.asarray(data, dtype=np.float32)
    soundfile.write(path, mono, SAMPLE_RATE, subtype="FLOAT")


def create() -> FlamingoGGUF:
    # Nothing heavy to load here: the model is loaded by llama.cpp on the first track, because the
    # mode, weights and context size come with the run's options.
    return FlamingoGGUF()
