"""Demucs' segment/overlap/shift processing, with several segments per forward pass.

``demucs.apply.apply_model`` runs one segment at a time. This loop does what its split path does —
the same segments (``segment`` seconds every ``(1 - overlap) * segment``), each padded from the
neighbouring audio by Demucs' own ``TensorChunk``, the same triangular cross-fade weights, the same
random time shifts (0 to 0.5 s, undone on the output and averaged) and the same weighting of the
models of a bag — but stacks ``batch`` segments into one forward pass, which is what keeps a GPU busy,
and calls back after each pass. The tests check it against ``apply_model`` itself.

Memory: the model sees ``batch`` segments at a time, whatever the track's length; the track's four
stems accumulate on the CPU, in place (4 × the mix's 44.1 kHz PCM; twice while a second shift or a
bag's next model is added).
"""
from __future__ import annotations

import random
from typing import Callable

import torch

Progress = Callable[[int, int, str], None]


def sub_models(model) -> tuple[list, list[list[float]]]:
    """The models of a bag (or the one model) and each one's weight per stem."""
    from demucs.apply import BagOfModels

    if isinstance(model, BagOfModels):
        return list(model.models), [list(w) for w in model.weights]
    return [model], [[1.0] * len(model.sources)]


def passes_needed(model, length: int, *, segment: float, overlap: float, shifts: int, batch: int) -> int:
    """Forward passes :func:`separate` makes on ``length`` frames (for progress)."""
    models, _ = sub_models(model)
    total = 0
    for sub in models:
        shifted = length + int(0.5 * sub.samplerate) if shifts else length
        segments = len(_offsets(shifted, sub, segment, overlap))
        total += max(1, shifts) * -(-segments // batch)
    return total


def _offsets(length: int, model, segment: float, overlap: float) -> range:
    segment_length = int(model.samplerate * segment)
    stride = int((1 - overlap) * segment_length)
    return range(0, length, stride)


def separate(model, mix: torch.Tensor, *, segment: float, overlap: float = 0.25, shifts: int = 1,
             batch: int = 1, device: torch.device | str = "cpu", seed: int = 0,
             on_progress: Progress | None = None) -> torch.Tensor:
    """Sources of ``mix`` ``[channels, frames]`` (already normalised as Demucs expects), as
    ``[sources, channels, frames]`` float32 on the CPU.

    ``segment`` in seconds (at most the model's own for HTDemucs), ``overlap`` a fraction in [0, 1),
    ``shifts`` random time shifts to average (0: none), ``batch`` segments per forward pass.
    ``seed`` makes the shifts reproducible.
    """
    rng = random.Random(seed)
    models, weights = sub_models(model)
    total = passes_needed(model, mix.shape[-1], segment=segment, overlap=overlap, shifts=shifts, batch=batch)
    done = [0]

    def step(label: str) -> None:
        done[0] += 1
        if on_progress is not None:
            on_progress(done[0], total, label)

    estimates: torch.Tensor | None = None
    totals = [0.0] * len(models[0].sources)
    for index, (sub, sub_weights) in enumerate(zip(models, weights)):
        sub.to(device)
        label = f"model {index + 1}/{len(models)}, " if len(models) > 1 else ""
        out = _shifted(sub, mix[None], segment=segment, overlap=overlap, shifts=shifts, batch=batch,
                       device=torch.device(device), rng=rng, step=step, label=label)[0]
        for k, weight in enumerate(sub_weights):
            out[k] *= weight
            totals[k] += weight
        if estimates is None:  # in place from here on: the stems are the largest thing held
            estimates = out
        else:
            estimates += out
        del out
        if len(models) > 1:
            sub.to("cpu")  # a bag's models take turns on the device
    assert estimates is not None
    for k, weight in enumerate(totals):
        estimates[k] /= weight
    return estimates


def _shifted(model, mix: torch.Tensor, *, segment: float, overlap: float, shifts: int, batch: int,
             device: torch.device, rng: random.Random, step: Callable[[str], None], label: str) -> torch.Tensor:
    from demucs.apply import TensorChunk

    if not shifts:
        return _split(model, TensorChunk(mix), segment=segment, overlap=overlap, batch=batch, device=device,
                      step=step, label=label)
    length = mix.shape[-1]
    max_shift = int(0.5 * model.samplerate)
    padded = TensorChunk(mix).padded(length + 2 * max_shift)
    out: torch.Tensor | None = None
    for shift in range(shifts):
        offset = rng.randint(0, max_shift)
        chunk = TensorChunk(padded, offset, length + max_shift - offset)
        shift_label = f"{label}shift {shift + 1}/{shifts}, " if shifts > 1 else label
        part = _split(model, chunk, segment=segment, overlap=overlap, batch=batch, device=device,
                      step=step, label=shift_label)[..., max_shift - offset:]
        if out is None:
            out = part  # a view: copying it would hold the stems twice
        else:
            out += part
        del part
    assert out is not None
    return out.div_(shifts)


def _split(model, mix, *, segment: float, overlap: float, batch: int, device: torch.device,
           step: Callable[[str], None], label: str) -> torch.Tensor:
    """Segments of ``mix`` (a ``TensorChunk`` of ``[1, channels, frames]``) through the model,
    ``batch`` at a time, cross-faded back into ``[1, sources, channels, frames]``."""
    from demucs.apply import TensorChunk
    from demucs.htdemucs import HTDemucs
    from demucs.utils import center_trim

    _, channels, length = mix.shape
    segment_length = int(model.samplerate * segment)
    offsets = list(_offsets(length, model, segment, overlap))
    # HTDemucs always computes on its training length (it pads shorter input itself), which is
    # what apply_model pads each segment to.
    padded_length = int(segment * model.samplerate) if isinstance(model, HTDemucs) else segment_length
    # A triangle peaking mid-segment; with overlap < 50 % a linear cross-fade.
    weight = torch.cat([torch.arange(1, segment_length // 2 + 1),
                        torch.arange(segment_length - segment_length // 2, 0, -1)]).float()
    weight = weight / weight.max()
    out = torch.zeros(1, len(model.sources), channels, length)
    sum_weight = torch.zeros(length)
    for first in range(0, len(offsets), batch):
        group = offsets[first:first + batch]
        chunks = [TensorChunk(mix, offset, segment_length) for offset in group]
        inputs = torch.cat([c.padded(padded_length) for c in chunks]).to(device)
        with torch.no_grad():
            outputs = model(inputs).float().cpu()
        for chunk, offset, result in zip(chunks, group, outputs):
            part = center_trim(result, chunk.length)
            n = part.shape[-1]
            out[0, ..., offset:offset + n] += weight[:n] * part
            sum_weight[offset:offset + n] += weight[:n]
        step(f"{label}segments {first + len(group)}/{len(offsets)}")
    assert sum_weight.min() > 0
    return out.div_(sum_weight)
