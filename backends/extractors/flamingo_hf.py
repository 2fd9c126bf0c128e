"""Music Flamingo (HF transformers, full precision): the same five descriptions as ``flamingo_gguf``.

Keys: ``music_flamingo_full``, ``_technical``, ``_genre_mood``, ``_instrumentation``, ``_structure``
(answers to the shared prompts file, normalised for T5 tokenizers exactly like the GGUF back end; null
when the model answered nothing, with the reason in provenance) and ``music_flamingo_model``
(``transformers_bf16``, ``transformers_fp32``; ``..._2601`` for the MusicFlamingo checkpoint).

The model loads once per worker. Per track the engine's decoded 16 kHz PCM (never the file again) is
featurised and encoded once; with ``prefix_cache`` on (default) the key/value cache of the shared
prefix (system text, user turn start, audio) is computed once and each question evaluates only its
own tokens. Provenance counts featurisations, audio encodes, prefix evaluations and tokens.

Options (profile ``[backend.flamingo_hf.options]`` or per run): ``model_dir`` (a local checkpoint
folder; default ``<models>/music-flamingo-hf``), ``dtype`` (float32, bfloat16, float16),
``attn_implementation`` (sdpa, eager, flash_attention_2), ``device`` (cpu, cuda; default: cuda when
torch sees one), ``prefix_cache`` (true/false), ``batch_questions`` (true, default: the five questions
are decoded as one batch over the shared prefix; false: one after another), ``prompts_file``,
``temperature``, ``top_p``, ``seed``, ``tracks_per_call`` (tracks whose questions are decoded as
rows of one batch, their prefixes padded to the longest; default 4 on a GPU, capped by the profile's
VRAM budget, 1 on a CPU-only profile; the same text as one track at a time),
and every other [sampling] key of the prompts file (``top_k``, ``min_p``, ``repeat_penalty``,
``repeat_last_n``): the same file and values the GGUF back end passes to llama.cpp.
The model loads on the first track and is kept while ``model_dir``, ``dtype``, ``attn_implementation``
and ``device`` stay the same. The profile's environment variables are the worker's from its start,
so they are in place before torch is imported.
"""
from __future__ import annotations

from backends.flamingo.prompts import FEATURE_KEYS, MODEL_KEY
from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track


def _models_for(options: dict) -> tuple[str, ...]:
    """None to fetch when the run names its own checkpoint folder (``model_dir``)."""
    return () if options.get("model_dir") else ("music_flamingo_hf",)


SPEC = BackendSpec(
    name="flamingo_hf",
    version="1",
    description="Music Flamingo (HF transformers): five text descriptions per track, same keys as flamingo_gguf",
    keys=(*FEATURE_KEYS, MODEL_KEY),
    audio=(AudioNeed("mix", 16000),),
    models=("music_flamingo_hf",),
    models_for=_models_for,
    device="gpu",
    vram_gb=15.0,
    option_defaults={"dtype": "float32", "attn_implementation": "sdpa"},
    # The same text with the audio prefix computed once or per question, the questions (and tracks)
    # batched or not.
    runtime_options=("prefix_cache", "batch_questions", "tracks_per_call"),
    # Several tracks' questions as rows of one batch (GPU default; capped by the VRAM budget). A
    # further track holds five copies of its prefix's KV cache: Qwen2.5-7B's 57 KB per token (bf16)
    # x up to 15,000 prefix tokens (the processor's 10-minute limit) x 5 rows ~ 4.3 GB.
    tracks_per_call=4,
    vram_per_extra_track_gb=5.0,
    timeout_s=3600,
    alternative_to="flamingo_gguf",
)

DEFAULT_DIR = "music-flamingo-hf"


class FlamingoHF(Extractor):
    def __init__(self):
        super().__init__(device="cpu")
        self.loaded = None
        self.loaded_key = None
        self.model_loads = 0
        self.tracks_done = 0

    def close(self) -> None:
        if self.loaded is not None:
            self.loaded = None
            from backends.flamingo.hf import release_memory

            release_memory()

    def _model(self, options: dict, track):
        from pathlib import Path

        from backends import models
        from backends.flamingo.hf import load

        folder = Path(options["model_dir"]) if options.get("model_dir") else models.models_dir() / DEFAULT_DIR
        if not folder.is_dir():
            raise models_missing(folder)
        key = (str(folder), options.get("dtype", "float32"), options.get("attn_implementation", "sdpa"),
               options.get("device"))
        if self.loaded is None or self.loaded_key != key:
            self.close()
            track.progress(0.0, "loading model")
            self.loaded = load(folder, dtype=key[1], attn_implementation=key[2], device=key[3])
            self.loaded_key = key
            self.model_loads += 1
            self.device = self.loaded.device
        return self.loaded

    def process(self, track: Track) -> Result:
        from backends.flamingo.hf import OutOfMemoryInModel, TrackSession
        from backends.flamingo.prompts import SAMPLING_KEYS, load_prompts, prompts_path
        from backends.protocol import OutOfMemory

        options = track.options
        prompts = load_prompts(prompts_path(options), overrides={k: options.get(k) for k in SAMPLING_KEYS})
        reuse = _flag(options.get("prefix_cache", True), "prefix_cache")
        # One batch needs the shared prefix's cache; without it the questions go one at a time.
        batched = reuse and _flag(options.get("batch_questions", True), "batch_questions")
        loaded = self._model(options, track)
        data, _ = track.audio("mix", 16000)
        mono = data.mean(axis=1) if data.ndim == 2 else data
        before = dict(loaded.stats)
        _reset_peak(loaded.device)
        where = track.mix.path
        track.progress(0.05, "encoding audio")
        try:
            session = TrackSession(loaded, mono, system=prompts.system, label=where, reuse_prefix=reuse)
        except OutOfMemoryInModel as exc:
            raise OutOfMemory(f"flamingo_hf: out of memory encoding the audio of {where} ({exc}); "
                              "nothing was written for this track") from None
        answers, questions = {}, {}
        try:
            if batched:
                track.progress(0.1, "five questions, one batch")
                try:
                    replies = session.ask_batch([(p.text, prompts.sampling(p)) for p in prompts.prompts])
                except OutOfMemoryInModel as exc:
                    raise OutOfMemory(
                        f"flamingo_hf: out of memory on {where} decoding the {len(prompts.prompts)} questions "
                        f"as one batch (nothing was written for this track; option batch_questions = false "
                        f"decodes them one at a time): {exc}") from None
                for prompt, answer in zip(prompts.prompts, replies):
                    answers[prompt.name] = answer.text
                    questions[prompt.name] = {"max_tokens": prompt.max_tokens, **answer.provenance()}
            for i, prompt in enumerate(() if batched else prompts.prompts):
                track.progress(0.1 + 0.9 * i / len(prompts.prompts), prompt.name)
                sampling = prompts.sampling(prompt)
                try:
                    answer = session.ask(prompt.text, sampling)
                except OutOfMemoryInModel as exc:
                    raise OutOfMemory(
                        f"flamingo_hf: out of memory on {where}, prompt {prompt.name!r} "
                        f"({i} of {len(prompts.prompts)} answered; nothing was written for this track): {exc}"
                    ) from None
                answers[prompt.name] = answer.text
                questions[prompt.name] = {"max_tokens": prompt.max_tokens, **answer.provenance()}
        finally:
            session.free()
        counts = {k: loaded.stats[k] - before[k] for k in loaded.stats}
        features, self.model_provenance = self._answered(loaded, prompts, reuse, batched, session, answers,
                                                         questions, counts)
        return Result(features)

    def process_batch(self, tracks: list[Track]) -> list[Result | BaseException]:
        """Several tracks (``tracks_per_call``): each featurised and encoded once, then all their
        questions decoded as one batch (``backends.flamingo.hf.ask_tracks``). A track whose audio
        cannot be encoded fails alone; out of memory in the joint batch raises, and the worker then
        runs the tracks one at a time."""
        from backends.flamingo.hf import OutOfMemoryInModel, TrackSession, ask_tracks
        from backends.flamingo.prompts import SAMPLING_KEYS, load_prompts, prompts_path
        from backends.protocol import OutOfMemory

        options = tracks[0].options
        reuse = _flag(options.get("prefix_cache", True), "prefix_cache")
        batched = reuse and _flag(options.get("batch_questions", True), "batch_questions")
        if len(tracks) == 1 or not batched or any(t.options != options for t in tracks[1:]):
            return super().process_batch(tracks)
        prompts = load_prompts(prompts_path(options), overrides={k: options.get(k) for k in SAMPLING_KEYS})
        loaded = self._model(options, tracks[0])
        _reset_peak(loaded.device)
        self.model_provenance = {}  # each track's provenance travels with its own result
        out: list[Result | BaseException | None] = [None] * len(tracks)
        sessions, counts = [], []
        try:
            for i, track in enumerate(tracks):
                before = dict(loaded.stats)
                try:
                    data, _ = track.audio("mix", 16000)
                    mono = data.mean(axis=1) if data.ndim == 2 else data
                    track.progress(0.05, "encoding audio")
                    session = TrackSession(loaded, mono, system=prompts.system, label=track.mix.path)
                except OutOfMemoryInModel as exc:
                    out[i] = OutOfMemory(f"flamingo_hf: out of memory encoding the audio of {track.mix.path} "
                                         f"({exc}); nothing was written for this track")
                    continue
                except Exception as exc:  # this track's own failure (bad audio); the others go on
                    out[i] = exc
                    continue
                sessions.append((i, track, session))
                counts.append({k: loaded.stats[k] - before[k] for k in loaded.stats})
            if sessions:
                for _, track, _ in sessions:
                    track.progress(0.1, f"five questions of {len(sessions)} tracks, one batch")
                prefix_before = loaded.stats["prefix_evaluations"]
                try:
                    replies = ask_tracks([session for _, _, session in sessions],
                                         [(p.text, prompts.sampling(p)) for p in prompts.prompts])
                except OutOfMemoryInModel as exc:
                    raise OutOfMemory(f"flamingo_hf: out of memory decoding {len(sessions)} tracks as one batch "
                                      f"({exc}); each is tried alone (option tracks_per_call lower avoids this)"
                                      ) from None
                per_track = (loaded.stats["prefix_evaluations"] - prefix_before) / len(sessions)
                for (i, track, session), count, answers_of in zip(sessions, counts, replies):
                    answers, questions = {}, {}
                    for prompt, answer in zip(prompts.prompts, answers_of):
                        answers[prompt.name] = answer.text
                        questions[prompt.name] = {"max_tokens": prompt.max_tokens, **answer.provenance()}
                    count["prefix_evaluations"] = int(per_track) if per_track == int(per_track) else per_track
                    features, provenance = self._answered(loaded, prompts, reuse, batched, session, answers,
                                                          questions, count, tracks_in_batch=len(sessions))
                    out[i] = Result(features, provenance=provenance)
        finally:
            for _, _, session in sessions:
                session.free()
        return [o if o is not None else RuntimeError("no answer") for o in out]

    def _answered(self, loaded, prompts, reuse: bool, batched: bool, session, answers: dict, questions: dict,
                  counts: dict, tracks_in_batch: int = 1) -> tuple[dict, dict]:
        """One track's keys and provenance."""
        from backends.flamingo.decode_rate import decode_record, transformers_spans
        from backends.flamingo.prompts import KEY_PREFIX, normalise_text
        from backends.process_memory import peak_rss_bytes

        self.tracks_done += 1
        features, empty = {}, []
        for name, raw in answers.items():
            text = normalise_text(raw)
            features[KEY_PREFIX + name] = text or None
            if not text:
                empty.append(name)
        features[MODEL_KEY] = loaded.label
        batching = ({"mode": "one batch over the shared prefix", "batch_size": len(prompts.prompts)}
                    if batched else {"mode": "sequential", "batch_size": 1})
        if tracks_in_batch > 1:
            batching = {"mode": "one batch over the tracks' shared prefixes", "batch_size": len(prompts.prompts),
                        "tracks_in_batch": tracks_in_batch, "rows": len(prompts.prompts) * tracks_in_batch}
        return features, {
            "model": loaded.label, "model_dir": str(loaded.folder), "architecture": loaded.architecture,
            "dtype": loaded.dtype, "attn_implementation": loaded.attn_implementation,
            "torch_device": loaded.device, **prompts.provenance(),
            "prefix_cache": "reused" if reuse else "off",
            "question_batching": batching,
            "model_loads": self.model_loads, "model_load_s": round(loaded.load_seconds, 3),
            "tracks_this_worker": self.tracks_done, **counts,
            "audio_windows": session.windows, "audio_tokens": session.audio_tokens,
            "prefix_tokens": session.prefix_tokens, "audio_seconds_heard": round(session.seconds_heard, 3),
            **({"audio_truncated": True} if session.truncated else {}),
            "prompt_tokens_evaluated": sum(q["prompt_tokens_evaluated"] for q in questions.values()),
            "prompt_tokens_cached": sum(q["prompt_tokens_cached"] for q in questions.values()),
            "generated_tokens": sum(q["generated_tokens"] for q in questions.values()),
            # This track's own tokens over its share of the batch's decoding (rows: every track's
            # questions in the batch).
            "decode": decode_record(transformers_spans(questions.values()), together=batched,
                                    batch_size=len(prompts.prompts) * tracks_in_batch if batched else 1,
                                    tracks_in_batch=tracks_in_batch),
            # With several tracks in one batch: the batch's peak, shared by its tracks.
            "peak_gpu_bytes": _peak(loaded.device),
            "peak_rss_bytes": peak_rss_bytes(),
            "questions": questions,
            **({"empty_answers": empty, "empty_reason": "the model stopped before writing any text"}
               if empty else {}),
        }


def models_missing(folder):
    from backends.protocol import ModelMissing

    return ModelMissing(
        f"flamingo_hf: no checkpoint folder at {folder}; download it on a machine with internet: "
        "mirdeck models fetch music_flamingo_hf (or music_flamingo_2601_hf, then set model_dir to its "
        "folder), or set [backend.flamingo_hf.options] model_dir to a local checkpoint folder")


def _flag(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "on", "off"):
        return value.lower() in ("true", "1", "on")
    from backends.protocol import BackendError

    raise BackendError(f"flamingo_hf: option {name} must be true or false, not {value!r}")


def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()


def _peak(device: str):
    """Peak GPU memory torch allocated for this track, in bytes; None on CPU (not a GPU number)."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.max_memory_allocated())
    return None


def create() -> FlamingoHF:
    # The checkpoint, dtype and device come with the run's options (the first request), so the model
    # loads on the first track and stays loaded for the rest of the run.
    return FlamingoHF()
