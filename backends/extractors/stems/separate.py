"""Demucs' segment/overlap/shift processing, with several segments per forward pass, streamed.

``demucs.apply.apply_model`` runs one segment at a time. This loop does what its split path does —
the same segments (``segment`` seconds every ``(1 - overlap) * segment``), each padded from the
neighbouring audio by Demucs' own ``TensorChunk``, the same triangular cross-fade weights, the same
random time shifts (0 to 0.5 s, undone on the output and averaged) and the same weighting of the
models of a bag — but stacks ``batch`` segments into one forward pass, which is what keeps a GPU busy,
and calls back after each pass. The tests check it against ``apply_model`` itself.

Memory: the model sees ``batch`` segments at a time, whatever the track's length, and so do the
stems. Each (model, shift) pass is a *lane* that overlap-adds its segments into a short window; the
lanes advance in step (the one furthest behind goes next), and the part of the track that no lane
can add to any more is handed to ``sink`` at once (the caller writes it to the stem files). So the
stems are never held whole: what is held is about one segment plus one batch per lane, instead of
4 × the track's 44.1 kHz PCM. A bag's models are all on the device together (the lanes take turns
by segment, not by model).
"""
from __future__ import annotations

import random
from typing import Callable

import torch

Progress = Callable[[int, int, str], None]
Sink = Callable[[torch.Tensor], None]
"""Receives the next frames of the separated track, ``[sources, channels, frames]``, in order."""


def sub_models(model) -> tuple[list, list[list[float]]]:
    """The models of a bag (or the one model) and each one's weight per stem."""
    from demucs.apply import BagOfModels

    if isinstance(model, BagOfModels):
        return list(model.models), [list(w) for w in model.weights]
    return [model], [[1.0] * len(model.sources)]


def passes_needed(model, length: int, *, segment: float, overlap: float, shifts: int, batch: int) -> int:
    """Forward passes :func:`stream` makes on ``length`` frames (for progress)."""
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


class _Lane:
    """One model over one (shifted) copy of the mix: its segments in order, overlap-added into a
    window whose start is handed on as soon as no later segment of the lane reaches it.

    Positions are the lane's own; ``skip`` of them come before the track's first frame (the shift)."""

    def __init__(self, model, chunk, *, skip: int, track_length: int, segment: float, overlap: float,
                 batch: int, device: torch.device, label: str):
        from demucs.htdemucs import HTDemucs

        self.model, self.chunk, self.skip, self.track_length = model, chunk, skip, track_length
        self.batch, self.device, self.label = batch, device, label
        self.length = chunk.length
        self.segment_length = int(model.samplerate * segment)
        self.offsets = list(_offsets(self.length, model, segment, overlap))
        # HTDemucs always computes on its training length (it pads shorter input itself), which is
        # what apply_model pads each segment to.
        self.padded_length = int(segment * model.samplerate) if isinstance(model, HTDemucs) else self.segment_length
        # A triangle peaking mid-segment; with overlap < 50 % a linear cross-fade.
        weight = torch.cat([torch.arange(1, self.segment_length // 2 + 1),
                            torch.arange(self.segment_length - self.segment_length // 2, 0, -1)]).float()
        self.weight = weight / weight.max()
        self.sources, self.channels = len(model.sources), chunk.shape[-2]
        self.next = 0  # the next segment
        self.base = 0  # the lane position of the window's first frame
        self.window = torch.zeros(self.sources, self.channels, 0)
        self.sum_weight = torch.zeros(0)
        self.frontier = 0  # track frames handed on so far

    @property
    def done(self) -> bool:
        return self.next >= len(self.offsets)

    def _grow(self, end: int) -> None:
        extra = end - self.base - self.window.shape[-1]
        if extra > 0:
            self.window = torch.cat([self.window, torch.zeros(self.sources, self.channels, extra)], dim=-1)
            self.sum_weight = torch.cat([self.sum_weight, torch.zeros(extra)])

    def advance(self) -> tuple[int, torch.Tensor]:
        """One forward pass of up to ``batch`` segments; returns the track frames now final, as
        (first track frame, ``[sources, channels, frames]``) — possibly none."""
        from demucs.apply import TensorChunk
        from demucs.utils import center_trim

        group = self.offsets[self.next:self.next + self.batch]
        chunks = [TensorChunk(self.chunk, offset, self.segment_length) for offset in group]
        inputs = torch.cat([c.padded(self.padded_length) for c in chunks]).to(self.device)
        with torch.no_grad():
            outputs = self.model(inputs).float().cpu()
        for chunk, offset, result in zip(chunks, group, outputs):
            part = center_trim(result, chunk.length)
            n = part.shape[-1]
            self._grow(offset + n)
            start = offset - self.base
            self.window[..., start:start + n] += self.weight[:n] * part
            self.sum_weight[start:start + n] += self.weight[:n]
        self.next += len(group)
        final = self.offsets[self.next] if not self.done else self.length
        count = final - self.base
        region, weights = self.window[..., :count], self.sum_weight[:count]
        assert count == 0 or weights.min() > 0
        region = region / weights
        self.window, self.sum_weight = self.window[..., count:].clone(), self.sum_weight[count:].clone()
        first = self.base - self.skip  # in track frames
        self.base = final
        lo, hi = max(0, first), min(self.track_length, first + count)
        if hi <= lo:
            return self.frontier, region[..., :0]
        self.frontier = hi
        return lo, region[..., lo - first:hi - first]


def stream(model, mix: torch.Tensor, *, sink: Sink, segment: float, overlap: float = 0.25, shifts: int = 1,
           batch: int = 1, device: torch.device | str = "cpu", seed: int = 0,
           on_progress: Progress | None = None) -> None:
    """Separate ``mix`` ``[channels, frames]`` (already normalised as Demucs expects) and hand the
    sources to ``sink`` in order, ``[sources, channels, frames]`` float32 on the CPU, as soon as
    they are final; every frame exactly once.

    ``segment`` in seconds (at most the model's own for HTDemucs), ``overlap`` a fraction in [0, 1),
    ``shifts`` random time shifts to average (0: none), ``batch`` segments per forward pass.
    ``seed`` makes the shifts reproducible (drawn model by model, shift by shift, as
    ``apply_model`` draws them).
    """
    from demucs.apply import TensorChunk

    rng = random.Random(seed)
    models, weights = sub_models(model)
    length = mix.shape[-1]
    total = passes_needed(model, length, segment=segment, overlap=overlap, shifts=shifts, batch=batch)
    totals = [sum(w[k] for w in weights) for k in range(len(models[0].sources))]
    lanes: list[tuple[_Lane, torch.Tensor]] = []
    for index, (sub, sub_weights) in enumerate(zip(models, weights)):
        sub.to(device)
        label = f"model {index + 1}/{len(models)}, " if len(models) > 1 else ""
        # Each lane's share of the result: its model's weight for the stem, over the bag's total
        # for the stem and the number of shifts averaged.
        share = torch.tensor([w / (t * max(1, shifts)) for w, t in zip(sub_weights, totals)])[:, None, None]
        common = dict(track_length=length, segment=segment, overlap=overlap, batch=batch,
                      device=torch.device(device))
        if not shifts:
            lanes.append((_Lane(sub, TensorChunk(mix[None]), skip=0, label=label, **common), share))
            continue
        max_shift = int(0.5 * sub.samplerate)
        padded = TensorChunk(mix[None]).padded(length + 2 * max_shift)
        for shift in range(shifts):
            offset = rng.randint(0, max_shift)
            chunk = TensorChunk(padded, offset, length + max_shift - offset)
            shift_label = f"{label}shift {shift + 1}/{shifts}, " if shifts > 1 else label
            lanes.append((_Lane(sub, chunk, skip=max_shift - offset, label=shift_label, **common), share))
    sources, channels = len(models[0].sources), mix.shape[0]
    pending = torch.zeros(sources, channels, 0)  # the sum of the lanes' shares, from ``handed``
    handed = 0
    done = 0
    while True:
        running = [(lane, share) for lane, share in lanes if not lane.done]
        if not running:
            break
        lane, share = min(running, key=lambda item: item[0].frontier)  # the lane furthest behind
        first, region = lane.advance()
        done += 1
        if on_progress is not None:
            on_progress(done, total, f"{lane.label}segments {lane.next}/{len(lane.offsets)}")
        end = first + region.shape[-1]
        if end - handed > pending.shape[-1]:
            pending = torch.cat([pending, torch.zeros(sources, channels, end - handed - pending.shape[-1])], dim=-1)
        pending[..., first - handed:end - handed] += share * region
        final = min(lane.frontier if not lane.done else length for lane, _ in lanes)
        if final > handed:
            sink(pending[..., :final - handed])
            pending = pending[..., final - handed:].clone()
            handed = final
    assert handed == length, (handed, length)


def separate(model, mix: torch.Tensor, **options) -> torch.Tensor:
    """The whole track's sources at once, ``[sources, channels, frames]`` (for comparisons; the
    module streams them to its files with :func:`stream`)."""
    parts: list[torch.Tensor] = []
    stream(model, mix, sink=parts.append, **options)
    return torch.cat(parts, dim=-1) if parts else torch.zeros(0)
