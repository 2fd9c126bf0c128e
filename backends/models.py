"""Finding installed model files from inside a backend (the parent's ``tui.install.models`` installs them).

The engine passes the weights folder in ``MIRDECK_MODELS_DIR``; a missing file becomes a
``model_missing`` error that names the exact command to install it.
"""
from __future__ import annotations

import os
from pathlib import Path

from backends import ROOT
from backends.protocol import ModelMissing


def models_dir() -> Path:
    default = ROOT / "models" / "weights"
    return Path(os.environ.get("MIRDECK_MODELS_DIR", default))


def require(name: str, file: str) -> Path:
    """Path of an installed model file, or ``ModelMissing`` with the fetch command."""
    path = models_dir() / file
    if not path.is_file():
        raise ModelMissing(f"model {name!r} is not installed (expected {path}); "
                           f"install it with: mirdeck models fetch {name}")
    return path
