"""A/B reports built from recorded back-end outputs, as each back end's provenance holds them."""
from __future__ import annotations

from pathlib import Path

from backends.flamingo.prompts import MODEL_KEY, PROMPT_NAMES
from tui.ab.reports import BackendRun, track_report, write_reports

SAMPLING = {"prompt_version": "v1", "prompts_sha256": "abc", "temperature": 0.7, "top_k": 40, "top_p": 0.9,
            "min_p": 0.05, "repeat_penalty": 1.0, "repeat_last_n": 64, "seed": 1234,
            "sampler_order": ["penalties", "temperature", "top_k", "top_p", "min_p"]}


def recorded(side: str, texts: dict[str, str], **changes) -> BackendRun:
    if side == "gguf":  # llama-server's shape (served mode)
        questions = {n: {"generated_tokens": 50, "prompt_tokens": 760, "cached_tokens": 750,
                         "prompt_eval_ms": 100.0, "eval_ms": 1000.0} for n in PROMPT_NAMES}
        model = "gguf_Q8_0"
    else:
        questions = {n: {"generated_tokens": 40, "seconds": 2.0, "first_token_s": 0.25, "tokens_per_s": 22.3,
                         "finish_reason": "stop"} for n in PROMPT_NAMES}
        model = "transformers_bf16"
    features = {f"music_flamingo_{n}": texts.get(n, f"{side} {n}") for n in PROMPT_NAMES} | {MODEL_KEY: model}
    return BackendRun(ok=True, features=features, provenance={**SAMPLING, "elapsed_s": 12.5, "questions": questions,
                                                              **changes},
                      peak_rss_bytes=3 << 30, peak_gpu_bytes=None)


def write_report(folder: Path, *, tracks=("Alpha", "Beta"), gguf_fails: str | None = None) -> Path:
    runs = []
    for name in tracks:
        gguf = (BackendRun(ok=False, error=gguf_fails) if gguf_fails else
                recorded("gguf", {"full": f"{name}: deep house at 124 BPM in A minor, warm pads."}))
        runs.append(track_report(name, f"/data/{name}", {
            "gguf": gguf, "hf": recorded("hf", {"full": f"{name}: a deep house groove, 124 bpm, A minor."})}))
    write_reports(folder, runs)
    return folder


def write_report_with_mirrors(folder: Path, dataset: Path, *, tracks=("Alpha", "Beta"), unfair: bool = False) -> Path:
    """A report as ``mirdeck ab`` leaves it: real track folders in ``dataset``, and beside the report
    each back end's mirror of them holding its answers in a real .INFO (written by the store)."""
    from backends.flamingo.prompts import KEY_PREFIX
    from tests.support.helpers import sine, write_track
    from tui.ab.reports import BACKENDS
    from tui.ab.run import mirror
    from tui.run import store
    from tui.run.dataset import scan

    for name in tracks:
        write_track(dataset, name, sine(220.0, 1.0))
    found = {t.folder.name: t for t in scan(dataset).tracks}
    runs = []
    for name in tracks:
        sides = {side: recorded(side, {n: f"{name}: {side} says {n}" for n in PROMPT_NAMES},
                                **({"temperature": 0.2} if unfair and side == "hf" else {}))
                 for side in BACKENDS}
        runs.append(track_report(name, str(found[name].folder), sides))
    for side, module in BACKENDS.items():
        work = folder / "tracks" / side
        for mirror_name, track in mirror([found[n] for n in tracks], work).items():
            run = next(r for r in runs if r["track"] == track.folder.name)
            features = {KEY_PREFIX + n: run["prompts"][n][side]["text"] for n in PROMPT_NAMES}
            features[MODEL_KEY] = run["backends"][side]["model"]
            store.merge(work / mirror_name, module, features=features,
                        provenance={"status": "ok", "version": "test", **SAMPLING})
    write_reports(folder, runs)
    return folder
