"""The plan: which modules run on which track, computed from the backends' specs and the .INFO files."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from backends.registry import RegistryError, order_by_requirements
from backends.spec import BackendSpec, options_hash, output_options
from tui.run import stems
from tui.run.dataset import TrackFolder
from tui.run.store import PROVENANCE_KEY, read_info_lenient


@dataclass
class TrackPlan:
    track: TrackFolder
    modules: list[str]
    info: dict[str, Any]  # the .INFO as it was at planning time
    origins: dict[str, str] = field(default_factory=dict)
    """Each stem the track has at planning time: ``separated`` or ``supplied``."""
    stem_outputs: dict[str, dict[str, Path]] = field(default_factory=dict)
    """Provider -> the stems it writes on this track, each with its target file."""

    def stem_path(self, stem: str) -> Path | None:
        """The file a reader of ``stem`` reads in this run: the one its provider writes, else the track's."""
        provider = self.coming.get(stem)
        if provider is not None:
            return self.stem_outputs[provider][stem]
        return self.track.stems.get(stem)

    @property
    def coming(self) -> dict[str, str]:
        """Stem -> the provider that writes it in this run."""
        return {stem: name for name, outputs in self.stem_outputs.items() for stem in outputs}

    def needs(self, specs: dict[str, BackendSpec]) -> dict[str, set[int | None]]:
        """Sources to decode for this track and the sample rates of each (None = native)."""
        wanted: dict[str, set[int | None]] = {}
        available = self.track.files()
        for name in self.modules:
            for need in specs[name].audio:
                if need.source in available:
                    wanted.setdefault(need.source, set()).add(need.sample_rate)
        return wanted


@dataclass
class Plan:
    modules: list[str]
    tracks: list[TrackPlan]
    skipped: Counter[str] = field(default_factory=Counter)  # already done
    not_applicable: Counter[str] = field(default_factory=Counter)  # a source it needs is missing
    not_applicable_reasons: dict[str, Counter[str]] = field(default_factory=dict)  # module -> why -> tracks
    problems: list[str] = field(default_factory=list)

    def planned(self) -> Counter[str]:
        return Counter(m for tp in self.tracks for m in tp.modules)


def is_done(spec: BackendSpec, info: dict[str, Any], options: dict[str, Any] | None = None,
            track: TrackFolder | None = None) -> bool:
    """Done means: the last run of this module succeeded, with the same version and the same
    output options (``options``: what this run gives it; None: none given), and its keys are there.
    A result recorded before options were recorded counts as made with the defaults.

    A module that provides stems is done on a track that has all of them, whoever wrote them."""
    if spec.provides and track is not None:
        return all(stem in track.stems for stem in spec.provides)
    block = info.get(PROVENANCE_KEY)
    prov = block.get(spec.name) if isinstance(block, dict) else None
    if not isinstance(prov, dict) or prov.get("status") != "ok" or prov.get("version") != spec.version:
        return False
    wanted = options_hash(output_options(spec, options or {}))
    if prov.get("options_hash", options_hash(output_options(spec, {}))) != wanted:
        return False
    return all(key in info for key in spec.keys)


def not_applicable_because(spec: BackendSpec, track: TrackFolder, coming: Iterable[str] = ()) -> str | None:
    """Why the module cannot run on the track (a source it needs is missing), or None.

    ``coming``: stems a provider writes on this track in this run, which count as there."""
    files = set(track.files()) | set(coming)
    missing = [need.source for need in spec.audio if need.required and need.source not in files]
    if missing:
        return f"no {' or '.join(missing)} {'file' if missing == ['mix'] else 'stem'}"
    if spec.needs_one_of and not any(source in files for source in spec.needs_one_of):
        return f"no {' or '.join(spec.needs_one_of)} stem"
    return None


def applicable(spec: BackendSpec, track: TrackFolder) -> bool:
    return not_applicable_because(spec, track) is None


def resolve_modules(specs: dict[str, BackendSpec], only: Iterable[str] | None = None,
                    skip: Iterable[str] = ()) -> list[str]:
    """The modules a run uses, each after what it requires; unknown names are errors."""
    only, skip = list(only or []), list(skip)
    for name in only + skip:
        if name not in specs:
            raise RegistryError(f"unknown module {name!r}; known modules: {', '.join(specs)}")
    # An alternative back end (same keys, another way) runs only when asked for by name.
    wanted = set(only) if only else {n for n in specs if not n.startswith("_") and not specs[n].alternative_to}
    wanted -= set(skip)
    for name in wanted:
        alt = specs[name].alternative_to
        if alt and alt in wanted:
            raise RegistryError(f"{name} and {alt} write the same keys; run one of them "
                                "('mirdeck ab' compares the two)")
    # Requirements come along even when not asked for; they are skipped per track when done.
    frontier = list(wanted)
    while frontier:
        for dep in specs[frontier.pop()].requires:
            if dep not in wanted:
                if dep in skip:
                    needing = ", ".join(n for n in wanted if dep in specs[n].requires)
                    raise RegistryError(f"cannot skip {dep!r}: {needing} requires it")
                wanted.add(dep)
                frontier.append(dep)
    order = order_by_requirements(specs, wanted)
    # Stem providers first: on each track the modules that read stems wait for them anyway.
    return [m for m in order if specs[m].provides] + [m for m in order if not specs[m].provides]


def _failed_before(spec: BackendSpec, info: dict[str, Any]) -> bool:
    """Whether this version of the module failed on the track last time (it is retried, but what
    it would write is not counted on: no model installed, a six-channel mix)."""
    block = info.get(PROVENANCE_KEY)
    prov = block.get(spec.name) if isinstance(block, dict) else None
    return isinstance(prov, dict) and prov.get("status") == "error" and prov.get("version") == spec.version


def make_plan(tracks: list[TrackFolder], specs: dict[str, BackendSpec], modules: list[str],
              overwrite: Iterable[str] = (), options: dict[str, dict[str, Any]] | None = None,
              stem_caches: dict[str, Path | None] | None = None) -> Plan:
    """Which modules run on which track. ``options``: each module's per-run options as its
    requests will carry them.

    A module that provides stems runs where one of them is missing (a folder with all four needs
    nothing) and, with ``--overwrite``, where it separated them itself; never over a supplied one.
    A module that reads stems is not done while a stem it would read now (or one separated in this
    run) is not among those it read last time, while one it read is separated again in this run,
    or while one it read has been replaced since (``stems.changed_since_read``): the stems of this
    run reach it in this run, and features never describe stems the track no longer has.
    """
    options = options or {}
    overwrite = set(overwrite)
    everything = "all" in overwrite
    stem_caches = stem_caches or {}
    plan = Plan(modules=modules, tracks=[])
    provider_first = [m for m in modules if specs[m].provides] + [m for m in modules if not specs[m].provides]
    for track in tracks:
        info, problem = read_info_lenient(track.info_path)
        if problem:
            plan.problems.append(problem + " (it will be moved aside at the first write)")
        origins = stems.origins(track, info, specs, stem_caches)
        chosen: set[str] = set()
        outputs: dict[str, dict[str, Path]] = {}
        coming: set[str] = set()
        for name in provider_first:
            spec = specs[name]
            redo = everything or name in overwrite
            why = not_applicable_because(spec, track, coming)
            if why:
                plan.not_applicable[name] += 1
                plan.not_applicable_reasons.setdefault(name, Counter())[why] += 1
                continue
            if spec.provides:
                cache = stem_caches.get(name)
                wanted = [s for s in spec.provides
                          if s not in track.stems or (redo and origins.get(s) == stems.SEPARATED)]
                if not wanted:
                    plan.skipped[name] += 1
                    continue
                chosen.add(name)
                outputs[name] = {s: track.stems[s] if s in track.stems else stems.output_path(track, s, cache)
                                 for s in wanted}
                # Done readers run again for the stems this run will write, unless the provider
                # failed here before: otherwise every run would redo them while, say, the model is
                # missing. Once its stems exist, the next run brings the readers up to date.
                if not _failed_before(spec, info):
                    coming |= set(wanted)
            elif redo or not is_done(spec, info, options.get(name)):
                chosen.add(name)
            elif stems.changed_since_read(spec, info, track, coming):
                chosen.add(name)  # done, but not from the stems the track has (or gets in this run)
            else:
                plan.skipped[name] += 1
        if chosen:
            plan.tracks.append(TrackPlan(track, [m for m in modules if m in chosen], info,
                                         origins=origins, stem_outputs=outputs))
    return plan
