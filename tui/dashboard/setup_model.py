"""What the set-up screen shows, computed without Textual: dataset completion per module,
each module's readiness (model or binary missing, with the command that fixes it), and the
environment each profile gives each backend, with the difference from another profile."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from backends.spec import BackendSpec
from tui import paths
from tui.run.dataset import scan
from tui.run.plan import applicable, is_done
from tui.run.profiles import Profile
from tui.run.store import read_info_lenient


@dataclass
class DatasetSummary:
    root: Path
    tracks: int = 0
    problems: list[str] = field(default_factory=list)
    done: dict[str, int] = field(default_factory=dict)
    """module -> tracks whose .INFO already holds this module's current version."""
    applicable: dict[str, int] = field(default_factory=dict)
    """module -> tracks that have the audio the module needs (a stem module skips mix-only tracks)."""
    error: str = ""


def summarise_dataset(root: str | Path, specs: dict[str, BackendSpec]) -> DatasetSummary:
    """Scan ``root`` and count per module how many tracks are complete. Reads every .INFO once."""
    root = Path(root).expanduser()
    summary = DatasetSummary(root=root)
    try:
        result = scan(root)
    except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        summary.error = str(exc)
        return summary
    summary.tracks, summary.problems = len(result.tracks), list(result.problems)
    summary.done = {name: 0 for name in specs}
    summary.applicable = {name: 0 for name in specs}
    for track in result.tracks:
        info, problem = read_info_lenient(track.info_path)
        if problem:
            summary.problems.append(problem)
        for name, spec in specs.items():
            if applicable(spec, track):
                summary.applicable[name] += 1
                summary.done[name] += is_done(spec, info, track=track)
    return summary


@dataclass(frozen=True)
class ModuleReadiness:
    state: str
    """``ready``, ``model missing`` or ``binary missing``."""
    fix: str = ""
    """The command that makes the module ready, when it is not."""


def llama_binary(profile: Profile | None) -> Path:
    variant = (profile.llama.get("build") if profile else None) or "cpu"
    return paths.ROOT / "bin" / "llama" / variant / "llama-mtmd-cli"


def readiness(spec: BackendSpec, profile: Profile | None = None, manifest=None) -> ModuleReadiness:
    if manifest is None:
        from tui.install.models import ManifestError, load_manifest

        try:
            manifest = load_manifest()
        except ManifestError as exc:
            return ModuleReadiness("model missing", str(exc))
    from tui.install.models import status

    missing = []
    # The models the profile's options choose (stems: htdemucs, or the four htdemucs_ft files).
    for model in spec.needed_models(profile.options_for(spec.name) if profile else {}):
        entry = manifest.get(model)
        if entry is None or not status(entry)[0]:
            missing.append(model)
    if missing:
        return ModuleReadiness("model missing", "mirdeck models fetch " + " ".join(missing))
    if "gguf" in spec.name and not llama_binary(profile).exists():
        return ModuleReadiness("binary missing", "bin/build-llama")
    return ModuleReadiness("ready")


def flamingo_backends(specs: dict[str, BackendSpec]) -> list[str]:
    return [name for name in specs if "flamingo" in name]


def env_lines(profile: Profile, backends: list[str]) -> list[tuple[str, str, str]]:
    """(scope, key, value) of everything the profile sets: ``*`` for every worker, else the
    backend the override belongs to."""
    lines = [("*", k, v) for k, v in profile.profile_env().items()]
    for name in backends:
        override = profile.backend.get(name)
        if override:
            lines += [(name, k, v) for k, v in override.env.items()]
    return lines


def env_diff(old: Profile | None, new: Profile, backends: list[str]) -> list[tuple[str, str, str, str]]:
    """What changes for the workers when switching from ``old`` to ``new``:
    (sign, scope, key, value) with sign ``+`` added, ``-`` removed, ``~`` changed."""
    if old is None:
        return []
    before = {(s, k): v for s, k, v in env_lines(old, backends)}
    after = {(s, k): v for s, k, v in env_lines(new, backends)}
    diff = []
    for key in sorted(set(before) | set(after)):
        if key not in before:
            diff.append(("+", *key, after[key]))
        elif key not in after:
            diff.append(("-", *key, before[key]))
        elif before[key] != after[key]:
            diff.append(("~", *key, f"{before[key]} → {after[key]}"))
    return diff
