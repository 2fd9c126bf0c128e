"""AudioBox Aesthetics: content enjoyment, content usefulness, production complexity and quality.

Meta's model (a WavLM Base encoder with four heads) scores the full mix on its own scale, about
1 to 10. Audio comes from mirdeck's decode step at 16 kHz (resampled with soxr) and is mixed to
mono; windows of 10 s go through the model in micro-batches sized from a memory budget.

Options (profile ``[backend.audiobox.options]`` or the CLI):
    precision         "float32" (default) or "bf16": bfloat16 autocast, applied on a GPU only
    micro_batch       windows per forward pass (1 to 64); overrides memory_budget_gb
    memory_budget_gb  activation memory for one micro-batch, in GB (default 1.5)

No score is ever made up: without the checkpoint every track fails with ``model_missing``.
"""
from __future__ import annotations

from backends.protocol import BackendError, ModelMissing, OutOfMemory
from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track

MODEL_NAME = "audiobox-aesthetics"
MODEL_FILE = "audiobox-aesthetics/checkpoint.pt"
DEFAULT_BUDGET_GB = 1.5
KEY_OF_AXIS = {"CE": "content_enjoyment", "CU": "content_usefulness",
               "PC": "production_complexity", "PQ": "production_quality"}

SPEC = BackendSpec(
    name="audiobox",
    version="1",
    description="AudioBox Aesthetics scores of the mix (model scale, about 1-10): content enjoyment, "
                "content usefulness, production complexity, production quality",
    keys=tuple(KEY_OF_AXIS.values()),
    audio=(AudioNeed("mix", 16000),),
    option_defaults={"precision": "float32"},
    runtime_options=("micro_batch", "memory_budget_gb"),  # the same windows, scored in other batches
    models=(MODEL_NAME,),
    device="gpu",
    # Weights (0.38 GB in float32) + one micro-batch at the GPU profiles' 2-3 GB budget + context.
    vram_gb=3.5,
    timeout_s=1800,
)


def _options(options: dict, device: str) -> tuple[int, str]:
    """(micro_batch, precision actually used) from the run's options; bad values are errors."""
    from backends.extractors.audiobox import model as am

    precision = options.get("precision", "float32")
    if precision not in ("float32", "bf16"):
        raise BackendError(f"audiobox option precision must be 'float32' or 'bf16', got {precision!r}")
    if device == "cpu":
        precision = "float32"  # bf16 autocast is a GPU speed-up; on CPU it is slower, not cheaper
    if "micro_batch" in options:
        micro = options["micro_batch"]
        if isinstance(micro, bool) or not isinstance(micro, int) or not 1 <= micro <= am.MAX_MICRO_BATCH:
            raise BackendError(f"audiobox option micro_batch must be an integer 1..{am.MAX_MICRO_BATCH}, "
                               f"got {micro!r}")
        return micro, precision
    budget = options.get("memory_budget_gb", DEFAULT_BUDGET_GB)
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget <= 0:
        raise BackendError(f"audiobox option memory_budget_gb must be a positive number, got {budget!r}")
    return am.micro_batch_for(budget * 1e9, precision), precision


class AudioboxAesthetics(Extractor):
    def __init__(self, scorer, **kwargs):
        super().__init__(**kwargs)
        self.scorer = scorer

    def process(self, track: Track) -> Result:
        import torch

        from backends.extractors.audiobox import model as am

        mix = track.mix
        key = str(am.SAMPLE_RATE)
        if key not in mix.pcm:
            raise RuntimeError("the engine did not decode the mix at 16000 Hz; SPEC.audio must declare it")
        frames = am.NpyFrames(mix.pcm[key], label=mix.path)  # errors name the user's file
        micro_batch, precision = _options(track.options, self.scorer.device.type)
        track.progress(0.0, "scoring 10 s windows")
        while True:
            try:
                [scores] = am.score(self.scorer, [frames], micro_batch=micro_batch, bf16=precision == "bf16",
                                    on_progress=lambda done, total: track.progress(done / total,
                                                                                   "scoring 10 s windows"))
                break
            except torch.OutOfMemoryError:
                # Scores do not depend on the micro-batch size, so a smaller one is a safe retry.
                if self.scorer.device.type == "cuda":
                    torch.cuda.empty_cache()
                if micro_batch == 1:
                    raise OutOfMemory(f"{mix.path}: out of {self.scorer.device.type} memory even with one "
                                      "10 s window per batch") from None
                micro_batch //= 2
                track.progress(0.0, f"out of memory: retrying with micro-batches of {micro_batch}")
        # Read by the worker after process(): how this result was computed.
        self.model_provenance.update(precision=precision, micro_batch=micro_batch)
        return Result({KEY_OF_AXIS[axis]: value for axis, value in scores.items()})

    def close(self) -> None:
        self.scorer = None


def _sha256(path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def create() -> AudioboxAesthetics:
    from backends import models

    path = models.require(MODEL_NAME, MODEL_FILE)

    import torch

    from backends.extractors.audiobox import model as am

    device = "cuda" if torch.cuda.is_available() else "cpu"  # ROCm builds answer to "cuda" too
    try:
        scorer = am.load_scorer(path, device)
    except am.CheckpointError as exc:
        raise ModelMissing(f"{exc}; the file is damaged or not this model: reinstall it with: "
                           f"mirdeck models fetch {MODEL_NAME}") from None
    cfg = scorer.wavlm_cfg
    return AudioboxAesthetics(scorer, device=device, model_provenance={
        "model": "facebook/audiobox-aesthetics",
        "model_file": str(path.name),
        "model_sha256": _sha256(path),
        "architecture": f"WavLM {cfg['encoder_layers']} layers x {cfg['encoder_embed_dim']} dim, "
                        f"{scorer.parameters:,} parameters",
    })
