"""Stem separation with Demucs: the drums, bass, other and vocals of a full mix, as files of the track.

The model is Hybrid Transformer Demucs from the ``demucs`` package (4.1.0): ``htdemucs`` by default,
``htdemucs_ft`` (four fine-tuned models, one per stem, four times the work) as option ``model``.
The mix comes from mirdeck's decode step at 44.1 kHz, is normalised as Demucs' own API does (the
mean and standard deviation of its mono sum), and goes through Demucs' segment/overlap/shift
processing (``separate.py``) in batches of segments. Each stem is written as 24-bit FLAC at the mix's
own rate, channel count and length (a mono mix gets mono stems), so the decode step reads it like a
stem the user supplied.

The engine decides which stems to write and where (``write_stems``: the track folder under the names
the dataset layout reads, or the cache folder of option ``cache_dir``); a stem already there is never
replaced unless the engine lists it in ``replace_stems`` (``--overwrite stems``, only for files this
module wrote).

Options (profile ``[backend.stems.options]`` or ``--set stems.OPTION=VALUE``):
    model     "htdemucs" (default) or "htdemucs_ft"
    segment   seconds per segment, at most the model's own 7.8 s (default: that)
    overlap   fraction of a segment shared with the next, 0 to 0.9 (default 0.25, Demucs' own)
    shifts    random time shifts averaged, 0 to 20 (default 1, Demucs' own; each one is a full pass)
    batch     segments per forward pass (default 1 on the CPU, 4 on a GPU); a GPU out-of-memory
              halves it and starts the track again, down to 1, then reports ``out_of_memory``
    seed      the shifts' random offsets (default 0: the same stems every time)
    repo      a folder of Demucs checkpoints instead of models/weights/demucs
    cache_dir write the stems under this folder instead of the dataset (read by the engine)
"""
from __future__ import annotations

from backends.protocol import BackendError, BadInput, OutOfMemory
from backends.spec import STEMS, AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track

MODEL_RATE = 44100
DEFAULT_MODEL = "htdemucs"
GPU_BATCH = 4
# Manifest entries (models/manifest.toml) per option ``model``.
MANIFEST_MODELS = {"htdemucs": ("htdemucs",),
                   "htdemucs_ft": tuple(f"htdemucs_ft-{stem}" for stem in STEMS)}


def _models_for(options: dict) -> tuple[str, ...]:
    return MANIFEST_MODELS.get(str(options.get("model", DEFAULT_MODEL)), (DEFAULT_MODEL,))

SPEC = BackendSpec(
    name="stems",
    version="1",
    description="drums, bass, other and vocals of the mix as FLAC files of the track (Demucs htdemucs), "
                "where the track does not have them",
    keys=(),
    audio=(AudioNeed("mix", MODEL_RATE),),
    provides=STEMS,
    models=MANIFEST_MODELS["htdemucs"] + MANIFEST_MODELS["htdemucs_ft"],
    models_for=_models_for,
    # What the stems are made with (recorded; a track that has all four needs nothing whatever
    # they were made with); batch, repo and cache_dir change only how and where.
    option_defaults={"model": DEFAULT_MODEL, "segment": None, "overlap": 0.25, "shifts": 1, "seed": 0},
    runtime_options=("batch", "repo", "cache_dir"),
    device="gpu",
    # Weights (42 M parameters, 0.17 GB in float32) + the GPU batch of 4 segments of 7.8 s at about
    # 0.36 GB of activations each (measured on the CPU: docs/performance.md) + the CUDA context.
    # An estimate until a GPU measures it (benchmarks/stems.py --device cuda).
    vram_gb=3.0,
    timeout_s=3600,
)


def _number(options: dict, key: str, default, low, high, kind=float):
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise BackendError(f"stems option {key} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if not low <= value <= high:
        raise BackendError(f"stems option {key} must be between {low} and {high}, got {value!r}")
    return kind(value)


class Stems(Extractor):
    def __init__(self, torch_device: str, **kwargs):
        super().__init__(**kwargs)
        self.torch_device = torch_device
        self.loaded: dict[tuple[str, str], object] = {}

    def _model(self, options: dict):
        from pathlib import Path

        from backends import models
        from backends.extractors.stems import checkpoint

        name = options.get("model", DEFAULT_MODEL)
        repo = Path(options["repo"]) if options.get("repo") else models.models_dir() / checkpoint.FOLDER
        key = (str(name), str(repo))
        if key not in self.loaded:
            self.loaded[key] = checkpoint.load(str(name), repo, self.torch_device)
        return self.loaded[key]

    def process(self, track: Track) -> Result:
        from pathlib import Path

        import numpy as np
        import torch

        from backends.extractors.stems import output, separate

        options = track.options
        targets = {stem: path for stem, path in options.get("write_stems", {}).items() if stem in STEMS}
        replace = set(options.get("replace_stems", []))
        mix = track.mix
        if mix.channels > 2:
            raise BadInput(f"{mix.path}: {mix.channels} channels; Demucs separates mono or stereo mixes")
        loaded = self._model(options)
        model = loaded.model
        segment = _number(options, "segment", float(min(m.segment for m in model.models)),
                          0.5, float(min(m.segment for m in model.models)))
        overlap = _number(options, "overlap", 0.25, 0.0, 0.9)
        shifts = _number(options, "shifts", 1, 0, 20, int)
        seed = _number(options, "seed", 0, 0, 2**31 - 1, int)
        batch = _number(options, "batch", GPU_BATCH if self.torch_device != "cpu" else 1, 1, 64, int)
        if not targets:
            return Result({}, provenance={"written": []})

        data, _ = track.audio("mix", MODEL_RATE)
        wav = torch.from_numpy(np.ascontiguousarray(data.T))  # [channels, frames]
        if wav.shape[0] == 1:
            wav = wav.expand(2, -1)
        # demucs.api.Separator's normalisation: the mono sum's mean and standard deviation (+1e-8,
        # so digital silence gives silent stems instead of dividing by zero).
        ref = wav.mean(0)
        mean, std = ref.mean(), ref.std() + 1e-8
        del ref  # the mix is now the largest thing held: one copy of it more, not two
        normalised = (wav - mean).div_(std)

        def progress(done: int, total: int, stage: str) -> None:
            track.progress(done / total, stage)

        wanted = [stem for stem in model.sources if stem in targets]
        while True:
            writers: dict[str, output.StemWriter] = {}
            try:
                for stem in wanted:
                    writers[stem] = output.StemWriter(Path(targets[stem]), rate=mix.sample_rate,
                                                      channels=mix.channels, frames=mix.frames,
                                                      model_rate=MODEL_RATE, replace=stem in replace)
            except BaseException:
                for writer in writers.values():
                    writer.abort()
                raise

            def sink(part: torch.Tensor) -> None:
                part = part * std + mean  # Demucs' normalisation undone, frames as they come
                for index, stem in enumerate(model.sources):
                    if stem in writers:
                        writers[stem].write(part[index].numpy().T)

            try:
                separate.stream(model, normalised, sink=sink, segment=segment, overlap=overlap, shifts=shifts,
                                batch=batch, device=self.torch_device, seed=seed, on_progress=progress)
                break
            except torch.OutOfMemoryError:
                for writer in writers.values():
                    writer.abort()
                # The stems do not depend on how many segments share a pass: a smaller batch is a safe retry.
                if self.torch_device != "cpu":
                    torch.cuda.empty_cache()
                if batch == 1:
                    raise OutOfMemory(f"{mix.path}: out of {self.torch_device} memory even with one "
                                      f"{segment:g} s segment per pass") from None
                batch //= 2
                track.progress(0.0, f"out of memory: retrying with {batch} segment(s) per pass")
            except BaseException:
                for writer in writers.values():
                    writer.abort()
                raise
        written, clipped = {}, {}
        try:
            for stem, writer in writers.items():
                try:
                    over = writer.finish()
                except FileExistsError:
                    track.note(stem, f"{writer.target} appeared during separation; left as it is")
                    continue
                written[stem] = str(writer.target)
                if over:
                    clipped[stem] = over
        finally:  # one that cannot be published (a full disk) leaves no partial file of the others
            for writer in writers.values():
                writer.abort()
        prov = {**loaded.provenance(), "segment": round(segment, 4), "overlap": overlap, "shifts": shifts,
                "seed": seed, "batch": batch}
        if clipped:  # FLAC holds full scale at most: never a silent change of the signal
            prov["samples_beyond_full_scale"] = clipped
        return Result({}, files=written, provenance=prov)

    def close(self) -> None:
        self.loaded.clear()


def create() -> Stems:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"  # ROCm builds answer to "cuda" too
    return Stems(device, device=device)
