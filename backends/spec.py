"""What an extractor declares about itself, so the plan and key conflicts are computed.

Every module under ``backends/extractors/`` defines ``SPEC = BackendSpec(...)`` at import time with
no heavy imports; the worker later calls the module's ``create(context)`` to load models.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

if TYPE_CHECKING:
    from backends.track import Track

STEMS = ("drums", "bass", "other", "vocals")
Device = Literal["cpu", "gpu"]


@dataclass(frozen=True)
class AudioNeed:
    """One decoded signal a backend reads.

    ``source`` is ``"mix"`` or a stem name; ``sample_rate`` ``None`` means the file's own rate.
    A stem need with ``required=False`` is read when the stem exists and skipped otherwise.
    """

    source: str = "mix"
    sample_rate: int | None = None
    required: bool = True


@dataclass(frozen=True)
class BackendSpec:
    name: str
    version: str
    description: str
    keys: tuple[str, ...]
    """Feature keys always written on success (a key may hold null where the spec says so)."""
    optional_keys: tuple[str, ...] = ()
    """Keys (glob patterns allowed, e.g. ``lufs_*``) written only when their input exists."""
    needs_one_of: tuple[str, ...] = ()
    """Sources of which a track must have at least one (e.g. the stems a stems-only module reads):
    without any, the module is not applicable to the track (n/a, never "done" with nothing)."""
    audio: tuple[AudioNeed, ...] = (AudioNeed(),)
    requires: tuple[str, ...] = ()
    """Backends whose results this one reads (they run first on the same track)."""
    provides: tuple[str, ...] = ()
    """Stems this backend writes as audio files of the track (``stems``: all four). On a track
    where it runs, every module that reads one of them waits for it and reads its files, decoded
    by the decode step like stems the user supplied; it never runs where all of them exist."""
    models: tuple[str, ...] = ()
    """Names in ``models/manifest.toml``."""
    device: Device = "cpu"
    vram_gb: float = 0.0
    timeout_s: float = 600.0
    max_workers: int = 0
    """Cap on parallel workers of this backend (0: one per job). For memory-hungry CPU models."""
    worker_memory_gb: float = 0.0
    """Peak memory of one worker on a long (7.5-minute) track. When set, a run starts no more
    workers of this backend than half the memory available when it starts holds (at least one)."""
    sidecars: tuple[str, ...] = ()
    """Suffixes of files written beside the .INFO, e.g. ``BEATS_GRID``."""
    option_defaults: dict[str, Any] = field(default_factory=dict)
    """Per-run options (profile ``[backend.NAME.options]``, ``--set``) with their defaults, so an
    option given at its default value counts as not given when deciding whether a track is done."""
    runtime_options: tuple[str, ...] = ()
    """Options that change only how the module runs (threads, batch sizes, GPU layers), never
    what it writes: left out of the options a track's result is recorded with."""
    models_for: Callable[[dict[str, Any]], tuple[str, ...]] | None = None
    """The models a run with these options loads, where options choose among ``models``
    (essentia_tf's ``heads``); None: always all of ``models``."""
    alternative_to: str = ""
    """A backend that writes exactly the same keys another way (e.g. Music Flamingo through
    transformers instead of llama.cpp). A run uses the alternative only when ``--only`` names it,
    never both at once; ``mirdeck ab`` compares the two."""
    sized_by_longest_track: bool = False
    """The worker sizes something once for the run's longest track (llama-server's context): the
    engine probes the planned mixes' durations before the sweep and sends the longest with every
    request (``Track.run["longest_mix_seconds"]``), so nothing is resized when a longer track comes."""
    tracks_per_call: int = 1
    """The most tracks one call to a worker carries by default on a GPU (1: one track per request,
    every module but those that batch tracks inside their model). Above 1 the worker gets ``batch``
    messages and the extractor's ``process_batch``; the option ``tracks_per_call`` overrides it, the
    VRAM budget caps it (``vram_per_extra_track_gb``), and on a CPU-only profile it is 1 unless the
    option asks for more (see ``tracks_per_call_for``)."""
    vram_per_extra_track_gb: float = 0.0
    """GPU memory each track beyond the first in one call adds (its key/value caches, activations)."""
    entry: str = ""
    """Import path of the module with ``create``; filled in by the registry."""

    def stems_read(self) -> tuple[str, ...]:
        """The stems this backend reads when they exist."""
        return tuple(s for s in STEMS if any(n.source == s for n in self.audio))

    def needed_models(self, options: dict[str, Any] | None = None) -> tuple[str, ...]:
        return self.models_for(options or {}) if self.models_for else self.models

    def produces(self, key: str) -> bool:
        return key in self.keys or any(fnmatch.fnmatchcase(key, p) for p in self.optional_keys)


TRACKS_PER_CALL_OPTION = "tracks_per_call"


def tracks_per_call_for(spec: BackendSpec, options: dict[str, Any], *, on_gpu: bool,
                        vram_budget_gb: float) -> tuple[int, str]:
    """How many tracks one call to ``spec``'s worker carries, and a warning ("" when none).

    Modules with ``tracks_per_call`` 1 always get 1. Otherwise: the option ``tracks_per_call`` when
    given, else the spec's default on a GPU and 1 on a CPU-only profile (decoding on a CPU is
    compute-bound: several tracks at once gain little there, see docs/performance.md); then capped
    so the module's model plus its extra tracks fit the VRAM budget (when a budget is set).
    """
    if spec.tracks_per_call <= 1:
        return 1, ""
    given = options.get(TRACKS_PER_CALL_OPTION)
    warning = ""
    if given is None:
        wanted = spec.tracks_per_call if on_gpu else 1
    elif isinstance(given, bool) or not isinstance(given, int) or given < 1:
        return 1, (f"{spec.name}: option {TRACKS_PER_CALL_OPTION} must be a whole number of at least 1, "
                   f"not {given!r}; one track per call")
    else:
        wanted = given
    if on_gpu and vram_budget_gb > 0 and spec.vram_per_extra_track_gb > 0 and wanted > 1:
        fit = 1 + int(max(0.0, vram_budget_gb - spec.vram_gb) // spec.vram_per_extra_track_gb)
        if fit < wanted:
            if given is not None:
                warning = (f"{spec.name}: {wanted} tracks per call do not fit the VRAM budget of "
                           f"{vram_budget_gb:g} GB ({spec.vram_gb:g} GB for the model, "
                           f"{spec.vram_per_extra_track_gb:g} GB per extra track); {fit} per call")
            wanted = fit
    return wanted, warning


def output_options(spec: BackendSpec, given: dict[str, Any]) -> dict[str, Any]:
    """The options that decide what ``spec`` writes: its defaults, overridden by ``given``,
    without the runtime-only ones; sorted, so equal settings give equal dicts."""
    merged = {**spec.option_defaults, **given}
    return {k: merged[k] for k in sorted(merged) if k not in spec.runtime_options}


def options_hash(options: dict[str, Any]) -> str:
    """A short, stable digest of output options (``output_options``): part of "done"."""
    import hashlib
    import json

    text = json.dumps(options, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Result:
    """What an extractor gives back for one track."""

    features: dict[str, Any]
    """Feature key -> JSON value; keys never start with ``_``."""
    files: dict[str, str] = field(default_factory=dict)
    """Sidecar kind -> path of a file written beside the .INFO (``Track.write_sidecar``)."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """What this track's values were computed from or over, beyond the module's fixed provenance
    (e.g. the share of the track where a pulse was found); merged into the module's provenance."""


@dataclass
class Extractor:
    """Base for a loaded backend. ``process`` maps one request to a ``Result``."""

    device: str = "cpu"
    model_provenance: dict[str, Any] = field(default_factory=dict)

    def process(self, track: Track) -> Result:  # pragma: no cover - interface
        raise NotImplementedError

    def process_batch(self, tracks: list[Track]) -> list[Result | BaseException]:
        """Several tracks of one call (a spec with ``tracks_per_call`` above 1): one ``Result`` or
        the exception it failed with per track, in order. This default runs ``process`` on each;
        an extractor that batches inside its model overrides it. If it raises instead, the worker
        runs ``process`` on each track alone, so one bad track never fails the others."""
        out: list[Result | BaseException] = []
        for track in tracks:
            try:
                out.append(self.process(track))
            except Exception as exc:  # each track's own error, reported by the worker
                out.append(exc)
        return out

    def close(self) -> None:
        """Free models; called once before the worker exits."""
