"""Name-keyed registry of extractors, discovered from their declared specs.

Importing an extractor module must stay cheap (stdlib only at module level), so the parent
process can read every spec without loading numpy, essentia or torch. Extra modules (tests,
plugins) are named in ``MIRDECK_EXTRA_BACKENDS`` as comma-separated import paths.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
from functools import lru_cache

from backends.spec import STEMS, BackendSpec


class RegistryError(ValueError):
    pass


def _module_names() -> list[str]:
    from backends import extractors

    names = [f"backends.extractors.{m.name}" for m in pkgutil.iter_modules(extractors.__path__)
             if not m.name.startswith("_")]
    extra = os.environ.get("MIRDECK_EXTRA_BACKENDS", "")
    names += [n.strip() for n in extra.split(",") if n.strip()]
    return names


@lru_cache(maxsize=None)
def _load(extra: str) -> dict[str, BackendSpec]:
    specs: dict[str, BackendSpec] = {}
    for module_name in _module_names():
        module = importlib.import_module(module_name)
        spec = getattr(module, "SPEC", None)
        if not isinstance(spec, BackendSpec):
            raise RegistryError(f"{module_name} has no SPEC = BackendSpec(...)")
        if spec.name in specs:
            raise RegistryError(f"backend name {spec.name!r} declared twice "
                                f"({specs[spec.name].entry} and {module_name})")
        specs[spec.name] = BackendSpec(**{**spec.__dict__, "entry": module_name})
    check_conflicts(specs.values())
    return specs


def all_specs() -> dict[str, BackendSpec]:
    """Every known backend by name, in discovery order."""
    return dict(_load(os.environ.get("MIRDECK_EXTRA_BACKENDS", "")))


def get(name: str) -> BackendSpec:
    specs = all_specs()
    if name not in specs:
        raise RegistryError(f"unknown module {name!r}; known modules: {', '.join(specs)}")
    return specs[name]


def check_conflicts(specs) -> None:
    """Two backends may not write the same key or provide the same stem, and requirements must
    exist without cycles."""
    specs = list(specs)
    by_name = {s.name: s for s in specs}
    owner: dict[str, str] = {}
    for spec in specs:
        if spec.alternative_to:
            other = by_name.get(spec.alternative_to)
            if other is None:
                raise RegistryError(f"{spec.name} is an alternative to unknown backend {spec.alternative_to!r}")
            if set(other.keys) != set(spec.keys) or other.optional_keys != spec.optional_keys:
                raise RegistryError(f"{spec.name} is an alternative to {other.name} but writes other keys")
        for key in spec.keys:
            if key.startswith("_"):
                raise RegistryError(f"{spec.name}: key {key!r} starts with '_', reserved for provenance")
            if key in owner and not _alternatives(spec, by_name[owner[key]]):
                raise RegistryError(f"key {key!r} is produced by both {owner[key]} and {spec.name}")
            owner.setdefault(key, spec.name)
    for spec in specs:
        for key, other in owner.items():
            if (other != spec.name and spec.produces(key) and key not in spec.keys
                    and not _alternatives(spec, by_name[other])):
                raise RegistryError(f"{spec.name}'s pattern covers {key!r}, a key of {other}")
    provider: dict[str, str] = {}
    for spec in specs:
        for source in spec.provides:
            if source not in STEMS:
                raise RegistryError(f"{spec.name} provides {source!r}, which is not a stem ({', '.join(STEMS)})")
            if source in provider:
                raise RegistryError(f"stem {source!r} is provided by both {provider[source]} and {spec.name}")
            if source in spec.stems_read():
                raise RegistryError(f"{spec.name} reads the stem {source!r} it provides")
            provider[source] = spec.name
    names = {s.name for s in specs}
    for spec in specs:
        for dep in spec.requires:
            if dep not in names:
                raise RegistryError(f"{spec.name} requires unknown backend {dep!r}")
    order_by_requirements({s.name: s for s in specs}, names)


def _alternatives(a: BackendSpec, b: BackendSpec) -> bool:
    return a.alternative_to == b.name or b.alternative_to == a.name


def order_by_requirements(specs: dict[str, BackendSpec], wanted) -> list[str]:
    """Wanted backends in an order where each comes after what it requires."""
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise RegistryError("requirement cycle: " + " -> ".join(chain + (name,)))
        state[name] = 1
        for dep in specs[name].requires:
            visit(dep, chain + (name,))
        state[name] = 2
        if name in wanted:
            order.append(name)

    for name in specs:
        if name in wanted:
            visit(name, ())
    return order
