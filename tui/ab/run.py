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
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from backends.flamingo.prompts import KEY_PREFIX, MODEL_KEY, PROMPT_NAMES, SAMPLING_KEYS, load_prompts, prompts_path
from tui.ab.reports import BACKENDS, BackendRun, report_name, track_report, write_reports
from tui.run import store

SAMPLE_EVERY_S = 0.5


def track_folders(paths_given: Iterable[Path]) -> tuple[list, list[str]]:
    """Track folders from the arguments: a track folder itself, or every track of a dataset folder."""
    from tui.run.dataset import scan

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
    from tui.run.engine import Engine, RunOptions

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
        report = track_report(track.name, str(track.folder.resolve()), runs)
        report["mirror"] = list(mirrors["gguf"][1])[index]  # the same name under every side's mirror
        reports.append(report)
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


def _answers(mirrored: Path, module: str) -> tuple[dict[str, Any], dict[str, Any]] | str:
    """The keys and provenance a back end wrote in its mirror of a track, or why they cannot be used."""
    info, problem = store.read_info_lenient(store.info_path(mirrored))
    prov = info.get(store.PROVENANCE_KEY, {}).get(module)
    if problem or not isinstance(prov, dict) or prov.get("status") != "ok":
        return f"{store.info_path(mirrored)}: {problem or f'holds no answer of {module}'}"
    keys = [KEY_PREFIX + p for p in PROMPT_NAMES] + [MODEL_KEY]
    return {k: info.get(k) for k in keys}, prov


def _merge_answers(real: Path, answers: tuple[dict[str, Any], dict[str, Any]], chosen_by: str, report_md: Path,
                   module: str) -> None:
    features, prov = answers
    store.merge(real, module, features=features,
                provenance={**prov, "chosen_by": chosen_by, "ab_report": str(report_md)})


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
        answers = _answers(work / list(names)[index], module)
        if isinstance(answers, str):
            continue
        _merge_answers(track.folder, answers, "mirdeck ab --winner " + winner,
                       out_dir / (report_name(report["track"]) + ".md"), module)
        written.append(str(track.folder))
    return written


def _mirror_of(work: Path, track: dict[str, Any]) -> Path | None:
    """The mirror of a track report's track under ``work``: by the name the report recorded, else
    (a report written before it recorded one) the mirror whose link points into the track's folder.
    Never by the folder's name alone: two datasets may both hold an ``Intro``."""
    if track.get("mirror"):
        folder = work / str(track["mirror"])
        return folder if folder.is_dir() else None
    real = os.path.realpath(track.get("folder", ""))
    for folder in sorted(p for p in work.iterdir() if p.is_dir()):
        if any(link.is_symlink() and os.path.dirname(os.path.realpath(link)) == real for link in folder.iterdir()):
            return folder
    return None


def apply_winner_from_report(folder: Path, winner: str, chosen_by: str) -> tuple[list[str], list[str]]:
    """Write ``winner``'s answers from an A/B report folder (``mirdeck ab``'s output, kept with its
    mirrors) into the real tracks' .INFO; returns (tracks written, tracks left out with why).

    Refused (nothing written) when the comparison was not fair, a track report cannot be read (its
    fairness is unknown) or the winner's mirror is gone."""
    from tui.ab.reports import ReportError, load_report

    if winner not in BACKENDS:
        raise WinnerRefused(f"the winner must be one of {', '.join(BACKENDS)}, not {winner!r}")
    try:
        report = load_report(folder)
    except ReportError as exc:
        raise WinnerRefused(str(exc)) from None
    if report.problems:
        raise WinnerRefused(f"{report.problems[0]}: a track report cannot be read, so the comparison's "
                            "fairness is unknown; no .INFO was changed")
    if not report.summary.get("fair", True) or not all(t.get("fair", True) for t in report.tracks):
        raise WinnerRefused("the comparison was not fair (see the reports); no .INFO was changed")
    work = Path(folder) / "tracks" / winner
    if not work.is_dir():
        raise WinnerRefused(f"{work}: the {winner} answers of this report are gone; no .INFO was changed")
    module = BACKENDS[winner]
    chosen, left = [], []
    for track in report.tracks:  # everything checked before the first .INFO changes
        real = Path(track.get("folder", ""))
        if not real.is_absolute():
            left.append(f"{real}: the report names it relative to where the A/B ran; left alone")
            continue
        if not track.get("backends", {}).get(winner, {}).get("ok"):
            left.append(f"{real}: {winner} did not answer there")
            continue
        if not real.is_dir():
            left.append(f"{real}: no such track folder")
            continue
        mirrored = _mirror_of(work, track)
        answers = _answers(mirrored, module) if mirrored is not None else f"{real}: no mirror in the report"
        if isinstance(answers, str):
            left.append(answers)
            continue
        chosen.append((real, answers, Path(folder) / (report_name(track["track"]) + ".md")))
    for real, answers, report_md in chosen:
        _merge_answers(real, answers, chosen_by, report_md, module)
    return [str(real) for real, _, _ in chosen], left
