"""A/B reports: what each back end did on each track, compared, written as JSON and Markdown, and
read back by the dashboard's A/B view.

Reports are the folders ``mirdeck ab`` writes (``summary.json`` plus one JSON and one Markdown file
per track); the view looks for them under the dataset (``.mirdeck/ab/``, where an A/B started from
the dashboard goes) and under ``./mirdeck-ab/`` (the command line's default). Textual-free, so
scripts and tests can use it too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from backends.flamingo.prompts import KEY_PREFIX, MODEL_KEY, PROMPT_NAMES, SAMPLING_KEYS
from tui.ab.compare import compare_facts, rouge_l_f1

BACKENDS = {"gguf": "flamingo_gguf", "hf": "flamingo_hf"}
FAIRNESS_FIELDS = ("prompt_version", "prompts_sha256", *SAMPLING_KEYS, "sampler_order")


@dataclass
class BackendRun:
    """What one back end did on one track (from the mirror's .INFO) and its worker's peak memory."""

    ok: bool
    features: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    peak_rss_bytes: int | None = None
    """Resident memory of the worker and its children (llama-server), highest sample over the run."""
    peak_gpu_bytes: int | None = None
    """From the GPU probe (tui.gpu) where there is one; None means not measured, not zero."""


# ---- per-question numbers from either back end's provenance --------------------------------------

def question_metrics(provenance: dict[str, Any], name: str) -> dict[str, Any]:
    """Tokens, seconds and tokens/s of one question; None where the back end did not record it."""
    q = (provenance.get("questions") or {}).get(name) or {}
    tokens = q.get("generated_tokens")
    seconds = q.get("seconds")
    if seconds is None and ("prompt_eval_ms" in q or "eval_ms" in q):  # llama.cpp reports milliseconds
        seconds = ((q.get("prompt_eval_ms") or 0) + (q.get("eval_ms") or 0)) / 1000
    tps = q.get("tokens_per_s")
    if tps is None and tokens and q.get("eval_ms"):
        tps = tokens / (q["eval_ms"] / 1000)
    return {"tokens": tokens, "seconds": round(seconds, 3) if seconds is not None else None,
            "tokens_per_s": round(tps, 2) if tps is not None else None,
            "first_token_s": q.get("first_token_s"), "finish_reason": q.get("finish_reason")}


def fairness(runs: dict[str, BackendRun]) -> list[str]:
    """Differences in prompts or sampling between the back ends that ran; empty when fair."""
    done = {side: run.provenance for side, run in runs.items() if run.ok}
    if len(done) < 2:
        return []
    (a, pa), (b, pb) = done.items()
    return [f"{f}: {a}={pa.get(f)!r} {b}={pb.get(f)!r}" for f in FAIRNESS_FIELDS if pa.get(f) != pb.get(f)]


# Two back ends "heard the same audio" when their heard lengths are this close (seconds): llama.cpp pads
# to whole 30 s windows and transformers keeps the frames with sound, which is not a difference in the
# music heard.
HEARD_TOLERANCE_S = 1.0


def audio_heard(runs: dict[str, BackendRun]) -> dict[str, Any]:
    """Seconds of the track each back end heard, and why they differ (None when they heard the same).

    transformers' processor stops at its ``max_audio_len`` (600 s for AF3) and records
    ``audio_truncated``; llama.cpp hears the whole track. A comparison of texts about different
    audio is not like with like, so the report flags it.
    """
    heard: dict[str, Any] = {}
    for side, run in runs.items():
        if run.ok:
            prov = run.provenance
            seconds = prov.get("audio_seconds_heard", prov.get("audio_seconds"))
            heard[side] = {"seconds": seconds, "of_seconds": prov.get("audio_seconds"),
                           "truncated": bool(prov.get("audio_truncated"))}
    reasons = [f"{side} heard {_num(h['seconds'])} s of {_num(h['of_seconds'])} s (its maximum audio length)"
               for side, h in heard.items() if h["truncated"]]
    if len(heard) == 2 and not reasons:
        (a, ha), (b, hb) = heard.items()
        if None not in (ha["seconds"], hb["seconds"]) and abs(ha["seconds"] - hb["seconds"]) > HEARD_TOLERANCE_S:
            reasons.append(f"{a} heard {_num(ha['seconds'])} s, {b} {_num(hb['seconds'])} s")
    return {"backends": heard, "differently": "; ".join(reasons) if len(heard) == 2 and reasons else None}


def track_report(name: str, folder: str, runs: dict[str, BackendRun]) -> dict[str, Any]:
    unfair = fairness(runs)
    report: dict[str, Any] = {
        "track": name, "folder": folder, "fair": not unfair, "unfair_because": unfair,
        "audio_heard": audio_heard(runs),
        "backends": {side: {"module": BACKENDS[side], "ok": run.ok, "error": run.error,
                            "model": run.features.get(MODEL_KEY), "elapsed_s": run.provenance.get("elapsed_s"),
                            "prompt_version": run.provenance.get("prompt_version"),
                            "sampling": {k: run.provenance.get(k) for k in (*SAMPLING_KEYS, "sampler_order")},
                            "question_batching": run.provenance.get("question_batching"),
                            "peak_rss_bytes": run.peak_rss_bytes,
                            "peak_gpu_bytes": run.peak_gpu_bytes if run.peak_gpu_bytes is not None
                            else run.provenance.get("peak_gpu_bytes")}
                     for side, run in runs.items()},
        "prompts": {},
    }
    for prompt in PROMPT_NAMES:
        key = KEY_PREFIX + prompt
        texts = {side: (run.features.get(key) if run.ok else None) for side, run in runs.items()}
        entry: dict[str, Any] = {side: {"text": texts[side], **question_metrics(run.provenance, prompt)}
                                 for side, run in runs.items()}
        a, b = texts.get("gguf"), texts.get("hf")
        entry["rouge_l_f1"] = round(rouge_l_f1(a, b), 4) if a and b and rouge_l_f1(a, b) is not None else None
        entry["facts"] = compare_facts(a or "", b or "")
        report["prompts"][prompt] = entry
    return report


def summary(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals and means over tracks; a mean is over the tracks where both values exist."""
    def mean(values):
        values = [v for v in values if v is not None]
        return round(sum(values) / len(values), 4) if values else None

    out: dict[str, Any] = {"tracks": len(reports), "fair": all(r["fair"] for r in reports), "backends": {},
                           "prompts": {},
                           "heard_differently": [r["track"] for r in reports
                                                 if (r.get("audio_heard") or {}).get("differently")],
                           "compared_tracks": sum(1 for r in reports
                                                  if all(b.get("ok") for b in r["backends"].values()))}
    for side in BACKENDS:
        per = [r["backends"].get(side, {}) for r in reports]
        q = [r["prompts"][p].get(side, {}) for r in reports for p in PROMPT_NAMES]
        peaks_rss = [b.get("peak_rss_bytes") for b in per if b.get("peak_rss_bytes") is not None]
        peaks_gpu = [b.get("peak_gpu_bytes") for b in per if b.get("peak_gpu_bytes") is not None]
        out["backends"][side] = {
            "ok_tracks": sum(1 for b in per if b.get("ok")),
            "failed_tracks": sum(1 for b in per if b and not b.get("ok")),
            "generated_tokens": sum(x.get("tokens") or 0 for x in q),
            "seconds_per_track": mean([b.get("elapsed_s") for b in per if b.get("ok")]),
            "tokens_per_s": mean([x.get("tokens_per_s") for x in q]),
            "peak_rss_bytes": max(peaks_rss) if peaks_rss else None,
            "peak_gpu_bytes": max(peaks_gpu) if peaks_gpu else None,
        }
    for prompt in PROMPT_NAMES:
        entries = [r["prompts"][prompt] for r in reports]
        agreement = {}
        for fact in ("tempo", "key"):
            words = [e["facts"][fact]["agreement"] for e in entries if e["facts"][fact]["agreement"] != "n/a"]
            agreement[fact] = {w: words.count(w) for w in sorted(set(words))}
        agreement["genre_jaccard"] = mean([e["facts"]["genre"]["jaccard"] for e in entries])
        out["prompts"][prompt] = {"rouge_l_f1": mean([e["rouge_l_f1"] for e in entries]), "facts": agreement}
    return out


# ---- Markdown ------------------------------------------------------------------------------------

def _num(value, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}{unit}" if abs(value) < 100 else f"{value:.1f}{unit}"
    return f"{value}{unit}"


def _mem(value) -> str:
    return "n/a" if value is None else f"{value / 2**20:.0f} MiB"


def _cell(text) -> str:
    if text is None:
        return "*(none)*"
    return str(text).replace("|", "\\|").replace("\n", "<br>")


def _batching(value) -> str:
    if not isinstance(value, dict):
        return "n/a"
    return f"{value.get('mode')}, {value.get('batch_size')} at once"


def track_markdown(report: dict[str, Any]) -> str:
    lines = [f"# A/B: {report['track']}", "", f"Folder: `{report['folder']}`", ""]
    if not report["fair"]:
        lines += ["**UNFAIR COMPARISON** (the back ends did not run the same prompts or sampling): "
                  + "; ".join(report["unfair_because"]), ""]
    heard = (report.get("audio_heard") or {}).get("differently")
    if heard:
        lines += [f"**AUDIO HEARD DIFFERENTLY** (the texts describe different audio): {heard}", ""]
    lines += ["| | GGUF (llama.cpp) | HF transformers |", "|---|---|---|"]
    b = report["backends"]
    g, h = b.get("gguf", {}), b.get("hf", {})
    for label, key, fmt in (("status", "ok", lambda v: "ok" if v else "failed"),
                            ("model", "model", _num), ("seconds (track)", "elapsed_s", _num),
                            ("prompts version", "prompt_version", _num),
                            ("peak RSS (worker, run)", "peak_rss_bytes", _mem),
                            ("peak GPU memory", "peak_gpu_bytes", _mem)):
        lines.append(f"| {label} | {fmt(g.get(key))} | {fmt(h.get(key))} |")
    lines.append(f"| sampling | {_cell(json.dumps(g.get('sampling')))} | {_cell(json.dumps(h.get('sampling')))} |")
    seconds = {side: ((report.get("audio_heard") or {}).get("backends") or {}).get(side, {}).get("seconds")
               for side in BACKENDS}
    lines.append(f"| audio heard (s) | {_num(seconds['gguf'])} | {_num(seconds['hf'])} |")
    lines.append(f"| question batching | {_batching(g.get('question_batching'))} | "
                 f"{_batching(h.get('question_batching'))} |")
    for side, info in (("GGUF", g), ("HF", h)):
        if info.get("error"):
            lines += ["", f"{side} error: {info['error']}"]
    for prompt, entry in report["prompts"].items():
        facts = entry["facts"]
        lines += ["", f"## {prompt}", "",
                  f"ROUGE-L F1: {_num(entry['rouge_l_f1'])} · tempo: {facts['tempo']['agreement']} "
                  f"({_num(facts['tempo']['a'])} / {_num(facts['tempo']['b'])} BPM) · key: "
                  f"{facts['key']['agreement']} ({_num(facts['key']['a'])} / {_num(facts['key']['b'])}) · "
                  f"genre words shared: {', '.join(facts['genre']['shared']) or 'none'} "
                  f"(Jaccard {_num(facts['genre']['jaccard'])})", "",
                  "| | GGUF | HF |", "|---|---|---|"]
        ge, he = entry.get("gguf", {}), entry.get("hf", {})
        lines.append(f"| text | {_cell(ge.get('text'))} | {_cell(he.get('text'))} |")
        for label, key in (("tokens", "tokens"), ("seconds", "seconds"), ("tokens/s", "tokens_per_s"),
                           ("first token (s)", "first_token_s"), ("finish", "finish_reason")):
            lines.append(f"| {label} | {_num(ge.get(key))} | {_num(he.get(key))} |")
    return "\n".join(lines) + "\n"


def summary_markdown(s: dict[str, Any], reports: list[dict[str, Any]]) -> str:
    lines = ["# A/B summary: GGUF (llama.cpp) vs HF transformers", "",
             f"{s['tracks']} tracks, {s['compared_tracks']} with answers from both back ends; prompts and "
             f"sampling {'identical' if s['fair'] else '**NOT identical** (UNFAIR: see the track reports)'}.",
             *([f"**AUDIO HEARD DIFFERENTLY** on {len(s['heard_differently'])} track(s) (one back end heard "
                f"less of the track; their texts describe different audio): {', '.join(s['heard_differently'])}."]
               if s.get("heard_differently") else []),
             "Similarity: ROUGE-L F1 over lower-cased words (longest common word subsequence; 1 = same "
             "wording in the same order, 0 = no shared words; blind to paraphrase, hence the fact columns).",
             "", "| | GGUF | HF |", "|---|---|---|"]
    g, h = s["backends"]["gguf"], s["backends"]["hf"]
    for label, key, fmt in (("tracks ok", "ok_tracks", _num), ("tracks failed", "failed_tracks", _num),
                            ("seconds per track", "seconds_per_track", _num),
                            ("generated tokens", "generated_tokens", _num), ("tokens/s (mean)", "tokens_per_s", _num),
                            ("peak RSS", "peak_rss_bytes", _mem), ("peak GPU memory", "peak_gpu_bytes", _mem)):
        lines.append(f"| {label} | {fmt(g.get(key))} | {fmt(h.get(key))} |")
    lines += ["", "| prompt | ROUGE-L F1 (mean) | tempo | key | genre Jaccard |", "|---|---|---|---|---|"]
    for prompt, entry in s["prompts"].items():
        f = entry["facts"]
        show = lambda d: ", ".join(f"{k} {v}" for k, v in d.items()) or "n/a"  # noqa: E731
        lines.append(f"| {prompt} | {_num(entry['rouge_l_f1'])} | {show(f['tempo'])} | {show(f['key'])} | "
                     f"{_num(f['genre_jaccard'])} |")
    lines += ["", "Tracks:", ""] + [f"- [{r['track']}]({quote(report_name(r['track']) + '.md')})" for r in reports]
    return "\n".join(lines) + "\n"


def report_name(track: str) -> str:
    return "".join(c if c.isalnum() or c in " -_.," else "_" for c in track).strip() or "track"


def write_reports(out_dir: Path, reports: list[dict[str, Any]]) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    for report in reports:
        base = out_dir / report_name(report["track"])
        base.with_suffix(".md").write_text(track_markdown(report), encoding="utf-8")
        base.with_suffix(".json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    s = summary(reports)
    (out_dir / "summary.json").write_text(json.dumps({"summary": s, "tracks": [r["track"] for r in reports]},
                                                     indent=2, ensure_ascii=False), encoding="utf-8")
    (out_dir / "summary.md").write_text(summary_markdown(s, reports), encoding="utf-8")
    return s


# ---- reading them back ---------------------------------------------------------------------------

SIDE_LABEL = {"gguf": "GGUF (llama.cpp)", "hf": "transformers"}


def dataset_ab_dir(dataset: Path) -> Path:
    return Path(dataset) / ".mirdeck" / "ab"


def find_reports(dataset: Path | None, cwd: Path | None = None) -> list[Path]:
    """Report folders, newest first (by their summary's time)."""
    roots = ([dataset_ab_dir(dataset)] if dataset else []) + [Path(cwd or Path.cwd()) / "mirdeck-ab"]
    found = {summary.parent.resolve() for root in roots if root.is_dir()
             for summary in root.glob("*/summary.json")}
    return sorted(found, key=lambda folder: (folder / "summary.json").stat().st_mtime, reverse=True)


@dataclass
class ABReport:
    folder: Path
    summary: dict[str, Any]
    tracks: list[dict[str, Any]]
    problems: list[str] = field(default_factory=list)
    """Track reports named in the summary that could not be read (the view says so)."""


class ReportError(Exception):
    pass


def load_report(folder: Path) -> ABReport:
    folder = Path(folder)
    try:
        data = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportError(f"{folder / 'summary.json'}: cannot read the A/B summary ({exc})") from exc
    tracks, problems = [], []
    for name in data.get("tracks", []):
        path = folder / f"{report_name(name)}.json"
        try:
            tracks.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            problems.append(f"{path}: {exc}")
    return ABReport(folder, data.get("summary", {}), tracks, problems)
