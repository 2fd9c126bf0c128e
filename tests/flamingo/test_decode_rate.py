"""The decode rate each Flamingo back end records per track, and how it reaches the dashboard."""
from __future__ import annotations

from backends.flamingo.decode_rate import decode_record, llama_spans, transformers_spans
from tui.run import events as ev
from tui.run.engine import decode_counts


def test_questions_in_series_add_their_times_and_a_batch_counts_its_span_once():
    # Three answers of 10, 20 and 30 tokens, each 1, 2 and 3 s from first token to last.
    spans = [(0.5, 1.5, 10), (0.2, 2.2, 20), (0.4, 3.4, 30)]
    series = decode_record(spans, together=False, batch_size=1)
    assert series == {"generated_tokens": 60, "seconds": 6.0, "tokens_per_s": 10.0, "batch_size": 1}
    # Decoded together from one origin: from the earliest first token (0.2 s) to the latest last (3.4 s).
    batch = decode_record(spans, together=True, batch_size=3)
    assert batch == {"generated_tokens": 60, "seconds": 3.2, "tokens_per_s": 18.75, "batch_size": 3}


def test_tracks_decoded_together_share_the_time_so_the_run_mean_counts_it_once():
    # Two tracks in one call, each 60 tokens over the same 3.2 s: the back end decoded 120 tokens
    # in 3.2 s, 37.5 tokens/s, and each track's record says so.
    spans = [(0.5, 1.5, 10), (0.2, 2.2, 20), (0.4, 3.4, 30)]
    records = [decode_record(spans, together=True, batch_size=6, tracks_in_batch=2) for _ in range(2)]
    assert records[0] == {"generated_tokens": 60, "seconds": 1.6, "tokens_per_s": 37.5, "batch_size": 6,
                          "tracks_in_batch": 2, "span_s": 3.2}
    tokens = sum(r["generated_tokens"] for r in records)
    assert tokens / sum(r["seconds"] for r in records) == 37.5


def test_nothing_generated_has_no_rate():
    assert decode_record([], together=True, batch_size=5)["tokens_per_s"] is None
    assert decode_record([(0.1, 0.1, 0)], together=False, batch_size=1)["tokens_per_s"] is None


def test_spans_from_each_back_end_s_own_timing_fields():
    llama = {"prompt_eval_ms": 250.0, "eval_ms": 1000.0, "generated_tokens": 40}
    assert llama_spans([llama]) == [(0.25, 1.25, 40)]
    hf = {"first_token_s": 0.3, "seconds": 2.3, "generated_tokens": 50, "tokens_per_s": 24.5}
    assert transformers_spans([hf]) == [(0.3, 2.3, 50)]


def test_the_engine_carries_the_record_and_ignores_a_bad_one():
    assert decode_counts({"decode": {"generated_tokens": 60, "seconds": 3.2}}) == (60, 3.2)
    for bad in ({}, {"decode": "fast"}, {"decode": {"generated_tokens": "many"}}, {"decode": None}):
        assert decode_counts(bad) == (0, 0.0)


def test_the_counts_survive_the_wire_for_attached_views():
    event = ev.ModuleFinished(track="t", module="flamingo_gguf", audio_seconds=4.0, wall_seconds=2.0,
                              realtime_factor=2.0, keys=6, generated_tokens=60, decode_seconds=3.2)
    back = ev.from_dict(event.to_dict())
    assert (back.generated_tokens, back.decode_seconds) == (60, 3.2)
    # An older engine's event (no such fields) reads as no text generated.
    old = {k: v for k, v in event.to_dict().items() if k not in ("generated_tokens", "decode_seconds")}
    assert ev.from_dict(old).generated_tokens == 0
