"""Environment profiles: ``profiles/<name>.toml``, applied only to the worker processes.

A profile may extend another; tables merge, the child's values win. Every problem is reported
with the file, the line and the key. The parent's own ``os.environ`` is never modified.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection

from tui import paths

DEVICES = ("cpu", "cuda", "rocm")
TOP_KEYS = {"description": str, "extends": str, "device": str, "vram_budget_gb": (int, float),
            "jobs": int, "env": dict, "backend": dict, "llama": dict}
BACKEND_KEYS = {"env": dict, "timeout_s": (int, float), "options": dict}
LLAMA_KEYS = {"build": str, "gpu_targets": str, "gpu_layers": int, "threads": int, "ctx_size": int}


class ProfileError(ValueError):
    pass


@dataclass
class BackendOverride:
    env: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Profile:
    name: str
    path: Path
    description: str = ""
    device: str = "cpu"
    vram_budget_gb: float = 0.0
    jobs: int = 0  # 0: one per CPU core
    env: dict[str, str] = field(default_factory=dict)
    backend: dict[str, BackendOverride] = field(default_factory=dict)
    llama: dict[str, Any] = field(default_factory=dict)
    chain: list[str] = field(default_factory=list)  # this profile and what it extends, nearest first

    def effective_jobs(self) -> int:
        return self.jobs if self.jobs > 0 else (os.cpu_count() or 1)

    def child_env(self, backend: str, base: dict[str, str] | None = None) -> dict[str, str]:
        """The complete environment a worker of ``backend`` starts with."""
        env = dict(os.environ if base is None else base)
        env.update(self.env)
        override = self.backend.get(backend)
        if override:
            env.update(override.env)
        env["MIRDECK_PROFILE"] = self.name
        return env

    def profile_env(self, backend: str | None = None) -> dict[str, str]:
        """Only what the profile sets (for display): profile-wide, then the backend's overrides."""
        env = dict(self.env)
        if backend and backend in self.backend:
            env.update(self.backend[backend].env)
        return env

    def timeout_for(self, backend: str, default: float) -> float:
        override = self.backend.get(backend)
        return override.timeout_s if override and override.timeout_s else default

    def options_for(self, backend: str) -> dict[str, Any]:
        override = self.backend.get(backend)
        return dict(override.options) if override else {}


def _line_of(text: str, table: str | None, key: str) -> int:
    """Best-effort line number of ``key`` (inside ``[table]`` when given) for error messages."""
    lines = text.splitlines()
    start, end = 0, len(lines)
    if table:
        header = re.compile(r"^\s*\[\s*" + re.escape(table).replace(r"\.", r"\s*\.\s*") + r"\s*\]")
        starts = [i for i, line in enumerate(lines) if header.match(line)]
        if starts:
            start = starts[0] + 1
            end = next((i for i in range(start, len(lines)) if lines[i].lstrip().startswith("[")), end)
    key_re = re.compile(r"^\s*\"?" + re.escape(key) + r"\"?\s*=")
    for i in range(start, end):
        if key_re.match(lines[i]):
            return i + 1
    return 0


def _where(path: Path, text: str, table: str | None, key: str) -> str:
    line = _line_of(text, table, key)
    return f"{path}:{line}" if line else str(path)


def _check_table(path: Path, text: str, table: str | None, data: dict[str, Any], schema: dict[str, Any]) -> None:
    for key, value in data.items():
        label = f"{table}.{key}" if table else key
        if key not in schema:
            raise ProfileError(f"{_where(path, text, table, key)}: unknown key {label!r} "
                               f"(allowed: {', '.join(sorted(schema))})")
        if not isinstance(value, schema[key]) or isinstance(value, bool):
            expected = schema[key].__name__ if isinstance(schema[key], type) else "number"
            if schema[key] is dict:
                expected = "table"
            raise ProfileError(f"{_where(path, text, table, key)}: {label!r} must be a {expected}, "
                               f"not {type(value).__name__}")


def _check_env(path: Path, text: str, table: str, env: dict[str, Any]) -> dict[str, str]:
    for key, value in env.items():
        if not isinstance(value, str):
            raise ProfileError(f"{_where(path, text, table, key)}: {table}.{key} must be a string "
                               f"(quote it: {key} = \"{value}\")")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ProfileError(f"{_where(path, text, table, key)}: {key!r} is not a valid variable name")
    return dict(env)


def _read_raw(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"{path}: profile file not found") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: TOML syntax error: {exc}") from None


def _validate(path: Path, raw: dict[str, Any], text: str, known_backends: Collection[str] | None) -> None:
    _check_table(path, text, None, raw, TOP_KEYS)
    if "device" in raw and raw["device"] not in DEVICES:
        raise ProfileError(f"{_where(path, text, None, 'device')}: device must be one of "
                           f"{', '.join(DEVICES)}, not {raw['device']!r}")
    if raw.get("vram_budget_gb", 0) < 0 or raw.get("jobs", 0) < 0:
        key = "jobs" if raw.get("jobs", 0) < 0 else "vram_budget_gb"
        raise ProfileError(f"{_where(path, text, None, key)}: {key} must not be negative")
    _check_env(path, text, "env", raw.get("env", {}))
    for name, table in raw.get("backend", {}).items():
        if known_backends is not None and name not in known_backends:
            line = next((i + 1 for i, row in enumerate(text.splitlines())
                         if re.match(r"^\s*\[\s*backend\s*\.\s*" + re.escape(name) + r"\b", row)), 0)
            raise ProfileError(f"{path}:{line}: unknown backend {name!r} in [backend.{name}] "
                               f"(known: {', '.join(sorted(known_backends))})")
        if not isinstance(table, dict):
            raise ProfileError(f"{path}: backend.{name} must be a table")
        _check_table(path, text, f"backend.{name}", table, BACKEND_KEYS)
        _check_env(path, text, f"backend.{name}.env", table.get("env", {}))
    _check_table(path, text, "llama", raw.get("llama", {}), LLAMA_KEYS)


def load(name_or_path: str, *, directory: Path | None = None,
         known_backends: Collection[str] | None = None) -> Profile:
    """Load a profile by name (from the profiles folder) or by path, resolving ``extends``."""
    directory = directory or paths.profiles_dir()
    if known_backends is None:
        from backends.registry import all_specs

        known_backends = set(all_specs())
    chain: list[tuple[Path, dict[str, Any]]] = []
    seen: list[str] = []
    current: str | None = name_or_path
    while current:
        path = Path(current) if current.endswith(".toml") else directory / f"{current}.toml"
        if not path.exists() and not current.endswith(".toml"):
            available = ", ".join(list_names(directory)) or "none"
            where = f" (extended by {seen[-1]})" if seen else ""
            raise ProfileError(f"no profile named {current!r}{where} in {directory}; available: {available}")
        key = str(path.resolve())
        if key in seen:
            raise ProfileError(f"{path}: 'extends' forms a cycle: {' -> '.join(seen + [key])}")
        seen.append(key)
        raw, text = _read_raw(path)
        _validate(path, raw, text, known_backends)
        chain.append((path, raw))
        parent = raw.get("extends")
        current = parent
    merged: dict[str, Any] = {"env": {}, "backend": {}, "llama": {}}
    for path, raw in reversed(chain):  # base first, so the child's values win
        for key, value in raw.items():
            if key == "env":
                merged["env"].update(value)
            elif key == "llama":
                merged["llama"].update(value)
            elif key == "backend":
                for bname, table in value.items():
                    slot = merged["backend"].setdefault(bname, {"env": {}, "options": {}})
                    slot["env"].update(table.get("env", {}))
                    slot["options"].update(table.get("options", {}))
                    if "timeout_s" in table:
                        slot["timeout_s"] = table["timeout_s"]
            elif key != "extends":
                merged[key] = value
    top_path = chain[0][0]
    return Profile(
        name=top_path.stem, path=top_path, description=merged.get("description", ""),
        device=merged.get("device", "cpu"), vram_budget_gb=float(merged.get("vram_budget_gb", 0.0)),
        jobs=int(merged.get("jobs", 0)), env=merged["env"], llama=merged["llama"],
        backend={n: BackendOverride(env=t["env"], timeout_s=t.get("timeout_s"), options=t["options"])
                 for n, t in merged["backend"].items()},
        chain=[p.stem for p, _ in chain])


def list_names(directory: Path | None = None) -> list[str]:
    directory = directory or paths.profiles_dir()
    return sorted(p.stem for p in directory.glob("*.toml")) if directory.is_dir() else []


def default_name() -> str:
    return os.environ.get("MIRDECK_PROFILE_DEFAULT", "cpu")
