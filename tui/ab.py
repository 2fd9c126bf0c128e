"""``mirdeck ab``: both Music Flamingo back ends on the same tracks, compared fairly, reported.

Fair means: one prompts file, and every sampler setting of its [sampling] table (temperature,
top-k, top-p, min-p, repeat penalty and window, seed; ``SAMPLING_KEYS``) passed explicitly to both back
ends as run options (so a profile's per-back-end override cannot make them differ), then checked
again from what each back end recorded in provenance; a run where they still differ is reported
unfair and no winner can be applied from it.

The user's ``.INFO`` files are never touched by the comparison: the engine runs on a mirror of the
tracks (a folder per track holding a link to its ``full_mix``) inside the report folder, with the
same worker machinery as ``mirdeck run``. Only ``--winner gguf|hf`` merges the chosen back end's
keys (and its provenance, with a pointer to the report) into the real ``.INFO``.
"""
from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from urllib.parse import quote
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from backends.flamingo_common import (KEY_PREFIX, MODEL_KEY, PROMPT_NAMES, SAMPLING_KEYS, load_prompts,
                                      prompts_path)
from tui import store
from tui.ab_compare import compare_facts, rouge_l_f1

BACKENDS = {"gguf": "flamingo_gguf", "hf": "flamingo_hf"}
FAIRNESS_FIELDS = ("prompt_version", "prompts_sha256", *SAMPLING_KEYS, "sampler_order")
SAMPLE_EVERY_S = 0.5


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


def track_report(name: str, folder: str, runs: dict[str, BackendRun]) -> dict[str, Any]:
    unfair = fairness(runs)
    report: dict[str, Any] = {
        "track": name, "folder": folder, "fair": not unfair, "unfair_because": unfair,
        "backends": {side: {"module": BACKENDS[side], "ok": run.ok, "error": run.error,
                            "model": run.features.get(MODEL_KEY), "elapsed_s": run.provenance.get("elapsed_s"),
                            "prompt_version": run.provenance.get("prompt_version"),
                            "sampling": {k: run.provenance.get(k) for k in (*SAMPLING_KEYS, "sampler_order")},
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


def track_markdown(report: dict[str, Any]) -> str:
    lines = [f"# A/B: {report['track']}", "", f"Folder: `{report['folder']}`", ""]
    if not report["fair"]:
        lines += ["**UNFAIR COMPARISON** (the back ends did not run the same prompts or sampling): "
                  + "; ".join(report["unfair_because"]), ""]
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
    lines += ["", "Tracks:", ""] + [f"- [{r['track']}]({quote(_report_name(r['track']) + '.md')})" for r in reports]
    return "\n".join(lines) + "\n"


def _report_name(track: str) -> str:
    return "".join(c if c.isalnum() or c in " -_.," else "_" for c in track).strip() or "track"


def write_reports(out_dir: Path, reports: list[dict[str, Any]]) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    for report in reports:
        base = out_dir / _report_name(report["track"])
        base.with_suffix(".md").write_text(track_markdown(report), encoding="utf-8")
        base.with_suffix(".json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    s = summary(reports)
    (out_dir / "summary.json").write_text(json.dumps({"summary": s, "tracks": [r["track"] for r in reports]},
                                                     indent=2, ensure_ascii=False), encoding="utf-8")
    (out_dir / "summary.md").write_text(summary_markdown(s, reports), encoding="utf-8")
    return s


# ---- running -------------------------------------------------------------------------------------

def track_folders(paths_given: Iterable[Path]) -> tuple[list, list[str]]:
    """Track folders from the arguments: a track folder itself, or every track of a dataset folder."""
    from tui.dataset import scan

    tracks, problems = [], []
    for path in paths_given:
        result = scan(path)
        tracks += result.tracks
        problems += result.problems
    return tracks, problems


def mirror(tracks, root: Path) -> dict[str, Any]:
    """A folder per track under ``root`` with a link to its mix; returns mirror name -> TrackFolder."""
    root.mkdir(parents=True, exist_ok=True)
    names: dict[str, Any] = {}
    for track in tracks:
        name, n = track.folder.name, 2
        while name in names:
            name, n = f"{track.folder.name} ({n})", n + 1
        folder = root / name
        folder.mkdir()
        os.symlink(track.mix.resolve(), folder / track.mix.name)
        names[name] = track
    return names


class MemorySampler:
    """Samples each A/B worker's resident memory (with children) and GPU memory while the run goes."""

    def __init__(self):
        self.pids: dict[str, set[int]] = {}
        self.peak_rss: dict[str, int] = {}
        self.peak_gpu: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        try:
            from tui.gpu import open_probe  # the dashboard's GPU probe, where it is merged in

            self.probe = open_probe()
            if getattr(self.probe, "source", "none") == "none":
                self.probe = None
        except ImportError:
            self.probe = None

    def on_event(self, event) -> None:
        if event.name == "worker_started" and event.module in BACKENDS.values():
            self.pids.setdefault(event.module, set()).add(event.pid)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        import psutil

        while not self._stop.wait(SAMPLE_EVERY_S):
            for module, pids in list(self.pids.items()):
                family = set()
                rss = 0
                for pid in list(pids):
                    try:
                        proc = psutil.Process(pid)
                        members = [proc] + proc.children(recursive=True)
                        rss += sum(p.memory_info().rss for p in members)
                        family |= {p.pid for p in members}
                    except psutil.Error:
                        continue
                if rss:
                    self.peak_rss[module] = max(self.peak_rss.get(module, 0), rss)
                if self.probe is not None and family:
                    try:
                        snap = self.probe.read(family)
                        vram = sum(m.vram for pid, m in snap.processes.items() if pid in family)
                        self.peak_gpu[module] = max(self.peak_gpu.get(module, 0), vram)
                    except Exception:  # a probe hiccup must not end the comparison
                        pass


@dataclass
class ABOptions:
    prompts_file: Path | None = None
    sampling: dict[str, Any] = field(default_factory=dict)
    """``SAMPLING_KEYS`` overrides for this comparison (both back ends get the same)."""
    backend_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per side (``gguf``, ``hf``): model choice and the like, never prompts or sampling."""
    winner: str | None = None
    jobs: int = 1


def shared_options(options: ABOptions) -> dict[str, Any]:
    """What both back ends must receive identically: the prompts file and its sampling, explicitly."""
    path = options.prompts_file or prompts_path({})
    prompts = load_prompts(path, overrides=options.sampling)
    return {"prompts_file": str(Path(path).resolve()), **{k: getattr(prompts, k) for k in SAMPLING_KEYS}}


def run_ab(tracks, profile, out_dir: Path, options: ABOptions, on_event=None,
           stop: threading.Event | None = None) -> tuple[dict, list[dict]]:
    """Run both back ends on ``tracks`` (TrackFolder list) and write the reports into ``out_dir``.

    One engine run per back end, one after the other, each on its own mirror: both write the same
    keys, and each has the machine (and the GPU) to itself while it is timed. ``stop`` (set from
    another thread, e.g. the dashboard quitting) kills the workers at once; the reports then say
    which tracks did not run.
    """
    from tui.engine import Engine, RunOptions

    forbidden = {"prompts_file", *SAMPLING_KEYS}
    for side, opts in options.backend_options.items():
        if forbidden & set(opts):
            raise ValueError(f"{side} options may not set {', '.join(sorted(forbidden & set(opts)))}: "
                             "an A/B runs both back ends with the same prompts and sampling")
    common = shared_options(options)
    sampler = MemorySampler()
    sampler.start()
    mirrors, unavailable = {}, {}
    try:
        for side, module in BACKENDS.items():
            work = out_dir / "tracks" / side
            mirrors[side] = (work, mirror(tracks, work))
            engine = Engine(work, profile, RunOptions(
                only=[module], overwrite=[module], jobs=options.jobs, log_dir=out_dir / "log" / side,
                module_options={module: {**options.backend_options.get(side, {}), **common}}))
            if module not in engine.specs:  # e.g. a checkout without the GGUF back end
                unavailable[side] = f"{module} is not installed in this checkout of mirdeck"
                continue
            engine.subscribe(sampler.on_event)
            if on_event:
                engine.subscribe(on_event)
            if stop is not None and stop.is_set():
                unavailable[side] = "the A/B was stopped before this back end ran"
                continue
            asyncio.run(_run_until_stopped(engine, stop))
    finally:
        sampler.stop()
    keys = [KEY_PREFIX + p for p in PROMPT_NAMES] + [MODEL_KEY]
    reports = []
    for index, track in enumerate(tracks):
        runs = {}
        for side, module in BACKENDS.items():
            work, names = mirrors[side]
            name = list(names)[index]
            info = store.read_info_lenient(store.info_path(work / name))[0]
            prov = info.get(store.PROVENANCE_KEY, {}).get(module, {})
            ok = prov.get("status") == "ok"
            error = unavailable.get(side) or (prov.get("error") or {}).get("message", "did not run")
            runs[side] = BackendRun(ok=ok, features={k: info.get(k) for k in keys} if ok else {}, provenance=prov,
                                    error=None if ok else error,
                                    peak_rss_bytes=sampler.peak_rss.get(module),
                                    peak_gpu_bytes=sampler.peak_gpu.get(module))
        reports.append(track_report(track.name, str(track.folder), runs))
    s = write_reports(out_dir, reports)
    if options.winner:
        apply_winner(reports, tracks, mirrors, options.winner, out_dir)
    return s, reports


async def _run_until_stopped(engine, stop: threading.Event | None) -> None:
    run = asyncio.ensure_future(engine.run())
    stopped = False
    while not run.done():
        if stop is not None and stop.is_set() and not stopped:
            engine.stop(immediate=True)
            stopped = True
        await asyncio.wait({run}, timeout=0.2)
    run.result()


class WinnerRefused(Exception):
    pass


def apply_winner(reports: list[dict], tracks, mirrors, winner: str, out_dir: Path) -> list[str]:
    """Merge the winner's keys and provenance into each real .INFO where it succeeded and the run was fair."""
    if winner not in BACKENDS:
        raise WinnerRefused(f"--winner must be one of {', '.join(BACKENDS)}, not {winner!r}")
    if not all(r["fair"] for r in reports):
        raise WinnerRefused("the comparison was not fair (see the reports); no .INFO was changed")
    module = BACKENDS[winner]
    work, names = mirrors[winner]
    written = []
    for index, (track, report) in enumerate(zip(tracks, reports)):
        if not report["backends"][winner]["ok"]:
            continue
        info = store.read_info_lenient(store.info_path(work / list(names)[index]))[0]
        keys = [KEY_PREFIX + p for p in PROMPT_NAMES] + [MODEL_KEY]
        prov = {**info[store.PROVENANCE_KEY][module], "chosen_by": "mirdeck ab --winner " + winner,
                "ab_report": str(out_dir / (_report_name(report["track"]) + ".md"))}
        store.merge(track.folder, module, features={k: info.get(k) for k in keys}, provenance=prov)
        written.append(str(track.folder))
    return written
