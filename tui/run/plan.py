"""The plan: which modules run on which track, computed from the backends' specs and the .INFO files."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable

from backends.registry import RegistryError, order_by_requirements
from backends.spec import BackendSpec, options_hash, output_options
from tui.run.dataset import TrackFolder
from tui.run.store import PROVENANCE_KEY, read_info_lenient


@dataclass
class TrackPlan:
    track: TrackFolder
    modules: list[str]
    info: dict[str, Any]  # the .INFO as it was at planning time

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


def is_done(spec: BackendSpec, info: dict[str, Any], options: dict[str, Any] | None = None) -> bool:
    """Done means: the last run of this module succeeded, with the same version and the same
    output options (``options``: what this run gives it; None: none given), and its keys are there.
    A result recorded before options were recorded counts as made with the defaults."""
    block = info.get(PROVENANCE_KEY)
    prov = block.get(spec.name) if isinstance(block, dict) else None
    if not isinstance(prov, dict) or prov.get("status") != "ok" or prov.get("version") != spec.version:
        return False
    wanted = options_hash(output_options(spec, options or {}))
    if prov.get("options_hash", options_hash(output_options(spec, {}))) != wanted:
        return False
    return all(key in info for key in spec.keys)


def not_applicable_because(spec: BackendSpec, track: TrackFolder) -> str | None:
    """Why the module cannot run on the track (a source it needs is missing), or None."""
    files = track.files()
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
    return order_by_requirements(specs, wanted)


def make_plan(tracks: list[TrackFolder], specs: dict[str, BackendSpec], modules: list[str],
              overwrite: Iterable[str] = (), options: dict[str, dict[str, Any]] | None = None) -> Plan:
    """``options``: each module's per-run options as its requests will carry them."""
    options = options or {}
    overwrite = set(overwrite)
    everything = "all" in overwrite
    plan = Plan(modules=modules, tracks=[])
    for track in tracks:
        info, problem = read_info_lenient(track.info_path)
        if problem:
            plan.problems.append(problem + " (it will be moved aside at the first write)")
        chosen: list[str] = []
        for name in modules:
            spec = specs[name]
            why = not_applicable_because(spec, track)
            if why:
                plan.not_applicable[name] += 1
                plan.not_applicable_reasons.setdefault(name, Counter())[why] += 1
            elif not (everything or name in overwrite) and is_done(spec, info, options.get(name)):
                plan.skipped[name] += 1
            else:
                chosen.append(name)
        if chosen:
            plan.tracks.append(TrackPlan(track, chosen, info))
    return plan
