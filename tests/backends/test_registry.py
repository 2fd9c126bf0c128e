"""registry.check_conflicts: who owns a key, glob patterns, requirements and their order."""
from __future__ import annotations

import pytest

from backends.registry import RegistryError, check_conflicts, order_by_requirements
from backends.spec import BackendSpec


def spec(name: str, keys=(), optional=(), requires=(), alternative_to="") -> BackendSpec:
    return BackendSpec(name=name, version="1", description=name, keys=tuple(keys), optional_keys=tuple(optional),
                       requires=tuple(requires), alternative_to=alternative_to)


def test_a_consistent_set_passes_and_orders_requirements_first():
    specs = [spec("rhythm", ["bpm"], requires=["audio_info"]), spec("audio_info", ["duration"]),
             spec("loudness", ["lufs"], optional=["lufs_*"])]
    check_conflicts(specs)
    order = order_by_requirements({s.name: s for s in specs}, {"rhythm", "audio_info", "loudness"})
    assert order.index("audio_info") < order.index("rhythm") and set(order) == {"rhythm", "audio_info", "loudness"}


@pytest.mark.parametrize("specs, message", [
    ([spec("a", ["bpm"]), spec("b", ["bpm"])], "key 'bpm' is produced by both a and b"),
    ([spec("loudness", ["lufs"], optional=["lufs_*"]), spec("stems", ["lufs_drums"])],
     "loudness's pattern covers 'lufs_drums', a key of stems"),
    ([spec("a", ["x"], requires=["ghost"])], "a requires unknown backend 'ghost'"),
    ([spec("a", ["x"], requires=["b"]), spec("b", ["y"], requires=["a"])], "requirement cycle: a -> b -> a"),
    ([spec("a", ["_mirdeck"])], "key '_mirdeck' starts with '_'"),
    ([spec("gguf", ["text"]), spec("hf", ["text", "more"], alternative_to="gguf")],
     "hf is an alternative to gguf but writes other keys"),
    ([spec("hf", ["text"], alternative_to="nobody")], "alternative to unknown backend 'nobody'"),
])
def test_conflicts_are_refused_with_what_is_wrong(specs, message):
    with pytest.raises(RegistryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_conflicts(specs)


def test_alternatives_may_write_the_same_keys():
    check_conflicts([spec("gguf", ["text"], optional=["t_*"]),
                     spec("hf", ["text"], optional=["t_*"], alternative_to="gguf")])
