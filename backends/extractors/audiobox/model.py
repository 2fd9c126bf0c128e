"""Meta's AudioBox Aesthetics model, driven directly: loading, windowing, micro-batched scoring.

Imported only from inside the ``audiobox`` extractor's functions (it imports torch at module level).
The model class and its target transform come from ``audiobox-aesthetics`` 0.0.4; its ``infer.py``
is not used because it imports torchaudio (not importable beside the CPU torch) and silently
downloads from the hub when a checkpoint path does not exist.

Scoring reproduces ``AesPredictor.forward`` exactly: 16 kHz mono, 10 s windows with a 10 s hop,
the last window zero-padded with a mask, one prediction per window and axis, the inverse target
transform, then a mean over the track's windows weighted by each window's real length. Unlike the
package (which sends every window of every file through the model as one batch, so memory grows
with the audio), windows go through in micro-batches of a fixed size, so memory is flat however
long the tracks are.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np
import torch

from backends.protocol import BadInput

SAMPLE_RATE = 16000
WINDOW_SECONDS = 10
HOP_SECONDS = 10
WINDOW = WINDOW_SECONDS * SAMPLE_RATE
HOP = HOP_SECONDS * SAMPLE_RATE
AXES = ("CE", "CU", "PC", "PQ")
# More channels than this in the first axis means the caller passed [samples, channels].
MAX_CHANNELS = 64

# Peak memory per window in a micro-batch for the real 12-layer, 768-dim model. float32: measured on
# CPU with `python -m benchmarks.audiobox` (docs/performance.md). bf16: an estimate (activations at
# half width), not yet measured on a GPU.
BYTES_PER_WINDOW = {"float32": 160e6, "bf16": 90e6}
MAX_MICRO_BATCH = 64

# The feature extractor's strides are not in the checkpoint (a stride has no weights); WavLM Base
# and every configuration of the package share these.
DEFAULT_CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)

MODEL_CFG_KEYS = ("proj_num_layer", "proj_ln", "proj_act_fn", "proj_dropout", "nth_layer",
                  "use_weighted_layer_sum", "precision", "normalize_embed", "output_dim")


class CheckpointError(Exception):
    """The checkpoint file exists but is not a usable AudioBox Aesthetics checkpoint."""


@dataclass
class Scorer:
    """A loaded model with its per-axis target transforms (model scale: about 1 to 10)."""

    model: torch.nn.Module
    transforms: dict[str, object]  # axis -> audiobox_aesthetics Normalize
    device: torch.device
    wavlm_cfg: dict
    parameters: int


# ---------------------------------------------------------------------------------------------
# Loading

def _encoder_layer_count(state: dict[str, torch.Tensor]) -> int:
    found = {int(m.group(1)) for k in state if (m := re.match(r"wavlm_model\.encoder\.layers\.(\d+)\.", k))}
    return max(found) + 1 if found else 0


def wavlm_config_from_state_dict(state: dict[str, torch.Tensor]) -> dict:
    """The WavLM configuration the weights were trained with, read from their tensor shapes.

    The checkpoint stores no encoder configuration (the package hard-codes WavLM Base in
    ``DEFAULT_AUDIO_CFG``). For the real weights this gives exactly that configuration; for a
    smaller stand-in it gives the stand-in's, so both run through the same code.
    """
    from audiobox_aesthetics.model.aes import DEFAULT_AUDIO_CFG

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise CheckpointError(f"state_dict has no {key!r}: not an AudioBox Aesthetics checkpoint")
        return tuple(state[key].shape)

    cfg = dict(DEFAULT_AUDIO_CFG.__dict__)
    layers = _encoder_layer_count(state)
    if layers == 0:
        raise CheckpointError("state_dict has no encoder layers: not an AudioBox Aesthetics checkpoint")
    embed = shape("wavlm_model.encoder.layers.0.self_attn.k_proj.weight")[0]
    buckets, heads = shape("wavlm_model.encoder.layers.0.self_attn.relative_attention_bias.weight")
    pos_out, pos_in, pos_kernel = shape("wavlm_model.encoder.pos_conv.0.weight_v")
    conv = []
    for i, stride in enumerate(DEFAULT_CONV_STRIDES):
        out_dim, _, kernel = shape(f"wavlm_model.feature_extractor.conv_layers.{i}.0.weight")
        conv.append((out_dim, kernel, stride))
    if f"wavlm_model.feature_extractor.conv_layers.{len(DEFAULT_CONV_STRIDES)}.0.weight" in state:
        raise CheckpointError("feature extractor has more conv layers than WavLM's seven")
    cfg.update(
        encoder_layers=layers,
        encoder_embed_dim=embed,
        encoder_ffn_embed_dim=shape("wavlm_model.encoder.layers.0.fc1.weight")[0],
        encoder_attention_heads=heads,
        num_buckets=buckets,
        conv_pos=pos_kernel,
        conv_pos_groups=pos_out // pos_in,
        conv_feature_layers=" + ".join(f"[{c}]" for c in conv),
    )
    return cfg


@contextlib.contextmanager
def _audio_config(cfg: dict):
    """Build ``AesMultiOutput`` with ``cfg`` instead of the module-level WavLM Base config.

    ``AesMultiOutput.__post_init__`` reads the module global; swapping it for the duration of one
    constructor call is the only way in without copying the class.
    """
    from audiobox_aesthetics.model import aes

    original = aes.DEFAULT_AUDIO_CFG
    aes.DEFAULT_AUDIO_CFG = aes.WavLMConfig(cfg)
    try:
        yield
    finally:
        aes.DEFAULT_AUDIO_CFG = original


def load_scorer(path: str | Path, device: str | torch.device = "cpu") -> Scorer:
    """Load a ``checkpoint.pt`` (dict with ``state_dict``, ``model_cfg``, ``target_transform``).

    Raises ``CheckpointError`` (with the reason) for a file that is truncated, not a torch file,
    or not this model; never falls back to downloading anything.
    """
    from audiobox_aesthetics.model.aes import AesMultiOutput, Normalize

    path = Path(path)
    device = torch.device(device)
    try:
        # weights_only: a checkpoint is data; never let a file run code when it is unpickled.
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint ({exc.__class__.__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if not isinstance(ckpt, dict) or not {"state_dict", "model_cfg", "target_transform"} <= set(ckpt):
        keys = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path}: expected a dict with state_dict, model_cfg and target_transform, "
                              f"found {keys}")
    state = {re.sub(r"^model\.", "", k): v for k, v in ckpt["state_dict"].items()}
    missing_cfg = [k for k in MODEL_CFG_KEYS if k not in ckpt["model_cfg"]]
    missing_axes = [a for a in AXES if a not in ckpt["target_transform"]]
    if missing_cfg or missing_axes:
        raise CheckpointError(f"{path}: model_cfg lacks {missing_cfg} / target_transform lacks {missing_axes}")
    wavlm_cfg = wavlm_config_from_state_dict(state)
    kwargs = {k: ckpt["model_cfg"][k] for k in MODEL_CFG_KEYS} | {"target_transform": ckpt["target_transform"]}
    with _audio_config(wavlm_cfg):
        model = AesMultiOutput(**kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model: {str(exc).splitlines()[0]}") from exc
    model.to(device)
    model.eval()
    transforms = {axis: Normalize(mean=float(ckpt["target_transform"][axis]["mean"]),
                                  std=float(ckpt["target_transform"][axis]["std"])) for axis in AXES}
    parameters = sum(p.numel() for p in model.parameters())
    return Scorer(model=model, transforms=transforms, device=device, wavlm_cfg=wavlm_cfg, parameters=parameters)


# ---------------------------------------------------------------------------------------------
# Audio sources

class Frames(Protocol):
    """Audio a scorer can read window by window: ``channels`` x ``frames`` at 16 kHz."""

    frames: int
    channels: int

    def read(self, start: int, count: int) -> np.ndarray:
        """float32 ``[channels, count]`` from frame ``start``."""


class ChannelsFirst:
    """An in-memory ``[channels, samples]`` float array (the package's own layout)."""

    def __init__(self, wav, *, label: str = "audio"):
        self.label = label
        wav = np.asarray(wav.detach().cpu() if isinstance(wav, torch.Tensor) else wav)
        if wav.ndim != 2:
            raise BadInput(f"{label}: expected audio shaped [channels, samples], got {wav.ndim} dimensions "
                           f"{tuple(wav.shape)}")
        channels, frames = wav.shape
        # A [samples, channels] array scores without any error but is wrong: the model would see
        # each sample instant as a separate "channel". Reject anything shaped that way.
        if channels > MAX_CHANNELS or 0 < frames < channels:
            raise BadInput(f"{label}: audio shaped {tuple(wav.shape)} looks like [samples, channels]; "
                           "expected [channels, samples] (transpose it)")
        self.wav, self.channels, self.frames = wav, channels, frames

    def read(self, start: int, count: int) -> np.ndarray:
        return np.asarray(self.wav[:, start:start + count], dtype=np.float32)


class NpyFrames:
    """mirdeck's shared PCM file (``.npy``, float32 ``[frames, channels]``), read window by window.

    Reads with plain file reads instead of a memory map so a 30-minute track never becomes
    resident in this process: memory stays one micro-batch wide.
    """

    def __init__(self, path: str | Path, *, label: str | None = None):
        self.path = Path(path)
        self.label = label or str(path)  # what error messages call it: the user's file
        with open(self.path, "rb") as fh:
            major, _ = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if major == 1
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(fh)
            self.offset = fh.tell()
        if len(shape) != 2 or fortran or dtype != np.float32:
            raise BadInput(f"{self.label}: decoded PCM file {self.path}: expected float32 [frames, channels] PCM, "
                           f"got {dtype} {shape}")
        self.frames, self.channels = int(shape[0]), int(shape[1])

    def read(self, start: int, count: int) -> np.ndarray:
        count = max(0, min(count, self.frames - start))
        block = np.empty((count, self.channels), dtype=np.float32)
        view = memoryview(block).cast("B")
        with open(self.path, "rb", buffering=0) as fh:
            fh.seek(self.offset + start * self.channels * 4)
            filled = 0
            while filled < len(view):
                got = fh.readinto(view[filled:])
                if not got:
                    ends = start + filled // (4 * self.channels)
                    raise BadInput(f"{self.label}: decoded PCM file {self.path} ends at frame {ends}, "
                                   f"its header says {self.frames}")
                filled += got
        return block.T


# ---------------------------------------------------------------------------------------------
# Scoring

@dataclass(frozen=True)
class Window:
    item: int
    start: int  # frame at 16 kHz
    length: int  # real frames in the window, 1..WINDOW; the rest is zero padding

    @property
    def weight(self) -> float:
        return self.length / WINDOW


def windows(lengths: Sequence[int]) -> Iterator[Window]:
    """Every item's windows, in order: 10 s windows on a 10 s hop, the last one partial."""
    for item, frames in enumerate(lengths):
        for start in range(0, frames, HOP):
            yield Window(item, start, min(WINDOW, frames - start))


def micro_batch_for(budget_bytes: float, precision: str = "float32") -> int:
    """How many windows fit in ``budget_bytes`` of activation memory (1 to ``MAX_MICRO_BATCH``)."""
    return int(max(1, min(MAX_MICRO_BATCH, budget_bytes // BYTES_PER_WINDOW[precision])))


@contextlib.contextmanager
def _precision(model, bf16: bool):
    """bf16 autocast through the model's own autocast block.

    ``AesMultiOutput`` wraps its forward in ``autocast(enabled=self.enable_autocast)``; the
    package computes that flag from the already-mapped dtype, so it is always False and an outer
    autocast is switched off again inside. Setting the flag on the instance is what takes effect.
    """
    saved = model.precision, model.enable_autocast
    model.precision, model.enable_autocast = (torch.bfloat16, True) if bf16 else (torch.float32, False)
    try:
        yield
    finally:
        model.precision, model.enable_autocast = saved


def score(scorer: Scorer, items: Sequence[Frames], *, micro_batch: int, bf16: bool = False,
          on_progress: Callable[[int, int], None] | None = None) -> list[dict[str, float]]:
    """Scores ``{"CE", "CU", "PC", "PQ"}`` per item, on the model's scale (about 1 to 10).

    Windows of all items go through the model ``micro_batch`` at a time (windows of different
    items may share a batch). ``bf16`` turns on bfloat16 autocast (meant for GPUs).
    ``on_progress(done_windows, total_windows)`` is called after each micro-batch.
    """
    if micro_batch < 1:
        raise ValueError(f"micro_batch must be at least 1, got {micro_batch}")
    for i, item in enumerate(items):
        if item.frames == 0:
            raise BadInput(f"{getattr(item, 'label', f'item {i}')}: no audio samples")
    plan = list(windows([item.frames for item in items]))
    sums = np.zeros((len(items), len(AXES)), dtype=np.float64)
    weights = np.zeros(len(items), dtype=np.float64)
    wav = torch.zeros((micro_batch, WINDOW), dtype=torch.float32)
    mask = torch.zeros((micro_batch, WINDOW), dtype=torch.bool)
    with torch.inference_mode(), _precision(scorer.model, bf16):
        for first in range(0, len(plan), micro_batch):
            batch = plan[first:first + micro_batch]
            wav.zero_()
            mask.zero_()
            for row, w in enumerate(batch):
                block = items[w.item].read(w.start, w.length)
                if not np.isfinite(block).all():
                    raise BadInput(f"{getattr(items[w.item], 'label', f'item {w.item}')}: non-finite samples "
                                   f"near {w.start / SAMPLE_RATE:.1f} s")
                # Mono as the package makes it: the mean of the channels.
                wav[row, :w.length] = torch.from_numpy(block.mean(axis=0, dtype=np.float32))
                mask[row, :w.length] = True
            n = len(batch)
            x = wav[:n].to(scorer.device)[:, None, :]
            m = mask[:n].to(scorer.device)[:, None, :]
            preds = scorer.model({"wav": x, "mask": m})
            for a, axis in enumerate(AXES):
                values = scorer.transforms[axis].inverse(preds[axis].float()).cpu().numpy().astype(np.float64)
                for row, w in enumerate(batch):
                    sums[w.item, a] += values[row] * w.weight
            for w in batch:
                weights[w.item] += w.weight
            if on_progress:
                on_progress(first + n, len(plan))
    return [{axis: float(sums[i, a] / weights[i]) for a, axis in enumerate(AXES)} for i in range(len(items))]
