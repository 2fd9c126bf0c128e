"""Finding and loading Demucs checkpoints the way the demucs package loads a local repository.

A Demucs checkpoint is ``<signature>-<first 8 hex digits of its sha256>.th``: ``torch.save`` of the
model's class, its constructor arguments and its state (``demucs.states.serialize_model``). A named
model (``htdemucs``, ``htdemucs_ft``) is a bag of signatures listed in a YAML file that ships inside
the package (``demucs/remote/<name>.yaml``). mirdeck keeps the checkpoints in one folder (default
``models/weights/demucs/``, where ``mirdeck models fetch htdemucs`` puts them; option ``repo`` for
another) and loads them with the package's own ``LocalRepo`` (which checks each file's sha256 prefix)
and ``BagOnlyRepo`` over its bundled YAML files — the code path of ``demucs -n htdemucs --repo DIR``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.protocol import BackendError, ModelMissing

FOLDER = "demucs"
SUPPORTED = ("htdemucs", "htdemucs_ft")
# The manifest entry that installs each signature (models/manifest.toml).
MANIFEST_NAME = {"955717e8": "htdemucs", "f7e0c4bc": "htdemucs_ft-drums", "d12395a8": "htdemucs_ft-bass",
                 "92cfc3b6": "htdemucs_ft-other", "04573f0d": "htdemucs_ft-vocals"}
# Written into a test stand-in's checkpoint (its ``training_args``): its stems are never real.
STAND_IN_MARKER = b"mirdeck_stand_in"


class CheckpointError(BackendError):
    pass


@dataclass
class Loaded:
    name: str
    model: Any  # demucs.apply.BagOfModels
    files: dict[str, Path]
    sha256: dict[str, str]
    stand_in: list[str] = field(default_factory=list)
    parameters: int = 0

    def provenance(self) -> dict[str, Any]:
        from importlib.metadata import version

        prov: dict[str, Any] = {
            "model": self.name, "demucs": version("demucs"),
            "model_files": {sig: path.name for sig, path in self.files.items()},
            "model_sha256": dict(self.sha256),
            "architecture": f"{type(self.model.models[0]).__name__} x{len(self.model.models)}, "
                            f"{self.parameters:,} parameters",
        }
        if self.stand_in:  # made-up weights: what they give must never pass for separation
            prov["stand_in"] = list(self.stand_in)
        return prov


def signatures(name: str) -> list[str]:
    """The checkpoints a named model needs, from the package's own bag file."""
    import yaml
    from demucs.pretrained import REMOTE_ROOT

    if name not in SUPPORTED:
        raise BackendError(f"stems option model must be one of {', '.join(SUPPORTED)}, got {name!r}")
    with open(REMOTE_ROOT / f"{name}.yaml", encoding="utf-8") as fh:
        return list(yaml.safe_load(fh)["models"])


def fetch_command(sigs: list[str]) -> str:
    return "mirdeck models fetch " + " ".join(MANIFEST_NAME.get(s, s) for s in sigs)


def find(repo: Path, sig: str) -> Path | None:
    """The checkpoint of ``sig`` in ``repo``, named as demucs' LocalRepo reads it."""
    if not repo.is_dir():
        return None
    found = sorted(p for p in repo.iterdir() if p.suffix == ".th" and p.stem.rsplit("-", 1)[0] == sig)
    return found[0] if found else None


def _sha256(path: Path) -> tuple[str, bool]:
    digest = hashlib.sha256()
    marked = False
    tail = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            marked = marked or STAND_IN_MARKER in tail + chunk
            tail = chunk[-len(STAND_IN_MARKER):]
    return digest.hexdigest(), marked


def load(name: str, repo: Path, device: str) -> Loaded:
    """The named model from ``repo``, in eval mode on ``device``; ``model_missing`` names the
    fetch command for whatever checkpoint is absent."""
    import torch
    from demucs.pretrained import REMOTE_ROOT
    from demucs.repo import BagOnlyRepo, LocalRepo, ModelLoadingError

    sigs = signatures(name)
    files = {sig: find(repo, sig) for sig in sigs}
    absent = [sig for sig, path in files.items() if path is None]
    if absent:
        raise ModelMissing(f"model {name!r} is not installed (no {', '.join(f'{s}-*.th' for s in absent)} in "
                           f"{repo}); install it with: {fetch_command(absent)}")
    try:
        bag = BagOnlyRepo(REMOTE_ROOT, LocalRepo(repo)).get_model(name)
    except ModelLoadingError as exc:  # a checksum that does not match the file name, duplicates
        raise ModelMissing(f"{exc}; reinstall it with: {fetch_command(sigs)}") from None
    except Exception as exc:  # not a Demucs checkpoint at all
        raise ModelMissing(f"{repo}: cannot load {name} ({exc!r}); reinstall it with: "
                           f"{fetch_command(sigs)}") from None
    bag.eval()
    bag.to(torch.device(device))
    hashes, stand_in = {}, []
    for sig, path in files.items():
        assert path is not None
        hashes[sig], marked = _sha256(path)
        if marked:
            stand_in.append(sig)
    return Loaded(name=name, model=bag, files={s: p for s, p in files.items() if p is not None},
                  sha256=hashes, stand_in=stand_in,
                  parameters=sum(p.numel() for p in bag.models[0].parameters()))
