"""One track's decode rate, from the per-question timings either Flamingo back end records.

The figure is throughput: the tokens the track's answers hold over the seconds the decoding took
from each answer's first token to its last. Questions decoded one after another add their times;
questions decoded together (one batch, parallel slots) count the span from the earliest first token
to the latest last token once, so five answers in one batch show the speed a batch gives.

Tracks decoded together in one call (``tracks_in_batch`` > 1) overlap in time: each track's span is
the whole call's, more or less. A track's ``seconds`` are then its share of that time (its span over
the number of tracks in the batch, the span itself kept as ``span_s``), so its rate is the batch's
throughput and the run's mean, every track's tokens over every track's seconds, counts the time
the back end spent decoding once, not once per track.

It goes into provenance as ``decode`` ({generated_tokens, seconds, tokens_per_s, batch_size}), which
the engine carries to its ``module_finished`` event and the dashboard shows per back end.
"""
from __future__ import annotations

from typing import Any, Iterable

Span = tuple[float, float, int]
"""(seconds at the first token, seconds at the last token, tokens generated) of one answer, both
times from the same origin: the question's start when decoded alone, the batch's start when together."""


def decode_record(spans: Iterable[Span], *, together: bool, batch_size: int,
                  tracks_in_batch: int = 1) -> dict[str, Any]:
    spans = list(spans)
    tokens = sum(n for _, _, n in spans)
    if not spans:
        span = 0.0
    elif together:
        span = max(end for _, end, _ in spans) - min(start for start, _, _ in spans)
    else:
        span = sum(end - start for start, end, _ in spans)
    span = max(0.0, span)
    shared = max(1, int(tracks_in_batch))
    seconds = round(span / shared, 4)  # the rate below is of the seconds recorded, to the digit
    record = {"generated_tokens": tokens, "seconds": seconds,
              "tokens_per_s": round(tokens / seconds, 2) if tokens and seconds > 0 else None,
              "batch_size": batch_size}
    if shared > 1:
        record.update(tracks_in_batch=shared, span_s=round(span, 4))
    return record


def llama_spans(questions: Iterable[dict[str, Any]]) -> list[Span]:
    """llama-server's own timings: ``prompt_eval_ms`` (the question's prompt, up to its first token),
    then ``eval_ms`` (the generated tokens). Parallel slots are sent at once, so their prompt
    evaluations start together and these offsets share one origin."""
    spans = []
    for q in questions:
        prompt_s, eval_s = (q.get("prompt_eval_ms") or 0.0) / 1000, (q.get("eval_ms") or 0.0) / 1000
        spans.append((prompt_s, prompt_s + eval_s, int(q.get("generated_tokens") or 0)))
    return spans


def transformers_spans(questions: Iterable[dict[str, Any]]) -> list[Span]:
    """The transformers runner's ``first_token_s`` and ``seconds`` (from the question's start, or the
    batch's start for a batch)."""
    return [(float(q.get("first_token_s") or 0.0), float(q.get("seconds") or 0.0),
             int(q.get("generated_tokens") or 0)) for q in questions]
