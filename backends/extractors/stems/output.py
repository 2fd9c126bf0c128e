"""Writing separated stems like the user's own: the mix's rate, channel count and length, as FLAC,
atomically, and never over a file that is already there unless the engine says it is ours."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from backends.protocol import BackendError, BadInput

SUBTYPE = "PCM_24"


def fit_to_mix(stem: np.ndarray, *, model_rate: int, rate: int, channels: int, frames: int) -> np.ndarray:
    """A stem ``[frames, 2]`` at the model's rate as ``[frames, channels]`` at the mix's rate and
    exact length (resampling may leave a frame more or less)."""
    from backends.audio import resample

    data = stem.mean(axis=1, keepdims=True) if channels == 1 else stem
    data = resample(np.ascontiguousarray(data, dtype=np.float32), model_rate, rate)
    if data.shape[0] >= frames:
        return np.ascontiguousarray(data[:frames])
    return np.concatenate([data, np.zeros((frames - data.shape[0], data.shape[1]), np.float32)])


def write_flac(target: Path, data: np.ndarray, rate: int, *, replace: bool) -> int:
    """Write ``data`` to ``target`` through a temporary file in the same folder (fsynced, then
    renamed), so a reader sees no file or the whole one. Returns the number of samples beyond full
    scale, which FLAC cannot hold and are written at full scale.

    Without ``replace`` an existing ``target`` is never touched (``FileExistsError``); the file is
    published by a hard link, which fails instead of overwriting when a file appeared meanwhile.
    """
    import soundfile

    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise BadInput(f"{folder}: cannot write stems here ({exc.strerror}); write them to a cache folder "
                       "instead: --set stems.cache_dir=PATH") from None
    over = int(np.count_nonzero(np.abs(data) > 1.0))
    try:
        with os.fdopen(fd, "wb") as fh:
            soundfile.write(fh, np.clip(data, -1.0, 1.0), rate, format="FLAC", subtype=SUBTYPE)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links: check, then rename
                if target.exists():
                    raise FileExistsError(str(target)) from None
                os.replace(tmp, target)
    except FileExistsError:
        raise
    except OSError as exc:
        raise BackendError(f"{target}: cannot write the stem ({exc.strerror})") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    _fsync_folder(folder)
    return over


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
