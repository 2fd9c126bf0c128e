"""Where mirdeck's own files live (the checkout it runs from) and where it keeps caches."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def profiles_dir() -> Path:
    return Path(os.environ.get("MIRDECK_PROFILES_DIR", ROOT / "profiles"))


def models_dir() -> Path:
    """Where model weights are installed (git-ignored); ``MIRDECK_MODELS_DIR`` overrides."""
    return Path(os.environ.get("MIRDECK_MODELS_DIR", ROOT / "models" / "weights"))


def manifest_path() -> Path:
    return Path(os.environ.get("MIRDECK_MANIFEST", ROOT / "models" / "manifest.toml"))


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("MIRDECK_CACHE_DIR", Path(base) / "mirdeck"))


def pcm_scratch_dir() -> Path:
    """Decoded PCM shared between workers: RAM-backed /dev/shm when there is one."""
    if "MIRDECK_PCM_DIR" in os.environ:
        return Path(os.environ["MIRDECK_PCM_DIR"])
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return cache_dir() / "pcm"
