"""Loading Essentia-TensorFlow graphs once per worker, with errors a user can act on.

Each graph is loaded the first time a track needs it and kept for the rest of the run; a graph
that failed to load is not tried again (the same error is repeated), so a damaged file costs
one load, not one per track. essentia is imported inside functions only: the registry imports
the extractor module in the parent process, which must never load TensorFlow.
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from backends import models
from backends.protocol import BackendError, ModelMissing

STAND_IN_MARKER = b"mirdeck/stand_in"
"""Name of a node that test stand-in graphs carry; a real Essentia model never has it."""


def import_essentia():
    """``essentia.standard`` with its info logging off (TensorFlow's own logs are silenced by
    ``TF_CPP_MIN_LOG_LEVEL``, which must be set before this import; the profiles set it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import essentia

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    import essentia.standard as es

    return es


@dataclass
class GraphFile:
    """Facts about one installed model file, for provenance."""

    name: str
    path: Path
    size: int
    sha256: str
    stand_in: bool

    @classmethod
    def read(cls, name: str, path: Path) -> "GraphFile":
        data = path.read_bytes()
        return cls(name=name, path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                   stand_in=STAND_IN_MARKER in data)


def _fetch_hint(name: str) -> str:
    return f"reinstall it with: mirdeck models fetch {name}"


def classify_load_error(name: str, path: Path, exc: Exception, nodes: tuple[str, ...]) -> BackendError:
    """Turn essentia's configure error into one that says what is wrong with which file."""
    text = str(exc)
    if "Error importing graph" in text or "Graph file is empty" in text:
        detail = (text.split("Error importing graph.")[-1].strip().splitlines() or [text])[0]
        return ModelMissing(f"model {name!r}: {path} is not a readable TensorFlow graph ({detail}); "
                            f"the file is damaged or not this model: {_fetch_hint(name)}")
    if "is not a valid node name" in text:
        missing = next((n for n in nodes if f"'{n.split(':')[0]}'" in text), "?")
        return ModelMissing(f"model {name!r}: {path} has no node {missing!r}, so it is not the graph "
                            f"mirdeck expects (expected nodes: {', '.join(nodes)}): {_fetch_hint(name)}")
    return BackendError(f"model {name!r}: loading {path} failed: {text.splitlines()[0] if text else exc!r}")


@dataclass
class GraphCache:
    """Loaded essentia algorithms by model name; ``loads`` counts real graph loads."""

    loads: dict[str, int] = field(default_factory=dict)
    files: dict[str, GraphFile] = field(default_factory=dict)
    _algorithms: dict[str, Any] = field(default_factory=dict)
    _failures: dict[str, BackendError] = field(default_factory=dict)

    def get(self, name: str, file: str, nodes: tuple[str, ...], build: Callable[[Any, str], Any]):
        """The algorithm for model ``name``, loading ``file`` the first time.

        ``build(es, path)`` creates and configures the essentia algorithm (which loads the graph).
        """
        if name in self._algorithms:
            return self._algorithms[name]
        if name in self._failures:
            raise self._failures[name]
        path = models.require(name, file)  # ModelMissing with the fetch command; not cached:
        # a file installed while the run goes on is picked up by the next track.
        es = import_essentia()
        self.loads[name] = self.loads.get(name, 0) + 1
        try:
            info = GraphFile.read(name, path)
            algorithm = build(es, str(path))
        except RuntimeError as exc:
            error = classify_load_error(name, path, exc, nodes)
            self._failures[name] = error
            print(f"essentia_tf: could not load graph {name}: {error.message}", file=sys.stderr, flush=True)
            raise error from None
        self.files[name] = info
        self._algorithms[name] = algorithm
        note = " (test stand-in)" if info.stand_in else ""
        print(f"essentia_tf: loaded graph {name} from {path}{note}, {info.size} bytes, "
              f"sha256 {info.sha256[:12]}", file=sys.stderr, flush=True)
        return algorithm

    def provenance(self) -> dict[str, Any]:
        prov: dict[str, Any] = {
            "model": ", ".join(sorted(self.files)),
            "model_sha256": {n: f.sha256 for n, f in sorted(self.files.items())},
        }
        stand_ins = sorted(n for n, f in self.files.items() if f.stand_in)
        if stand_ins:  # results of made-up weights must never pass for real predictions
            prov["stand_in"] = stand_ins
        return prov
