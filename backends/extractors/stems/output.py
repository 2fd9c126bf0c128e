"""Writing separated stems like the user's own: the mix's rate, channel count and length, as FLAC,
streamed as the separation goes, published atomically, and never over a file that is already there
unless the engine says it is ours."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from backends.pids import pid_alive
from backends.protocol import BackendError, BadInput

SUBTYPE = "PCM_24"


PARTIAL = ".partial"


def remove_stale_partials(target: Path) -> None:
    """Remove the partial files of ``target`` left by a worker that was killed while it separated
    (a timeout, ``mirdeck stop --now``, the OOM killer): their names carry the writer's pid, and a
    pid that is no longer alive wrote its last byte."""
    for path in target.parent.glob(f".{target.name}.*{PARTIAL}"):
        pid = path.name[len(target.name) + 2:].split(".", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            try:
                path.unlink()
            except OSError:
                pass


class StemWriter:
    """One stem's FLAC, written as the separation hands its frames on: at the mix's rate (resampled
    as it streams), channel count and exact length, into a temporary file in the target's folder
    that :meth:`finish` fsyncs and publishes, so a reader sees no file or the whole one.

    Without ``replace`` an existing target is never touched (``FileExistsError`` from ``finish``):
    the file is published by a hard link, which fails instead of overwriting a file that appeared
    meanwhile. Samples beyond full scale, which FLAC cannot hold, are written at full scale and
    counted (``over``)."""

    def __init__(self, target: Path, *, rate: int, channels: int, frames: int, model_rate: int, replace: bool):
        import soundfile

        self.target, self.rate, self.channels, self.frames, self.replace = target, rate, channels, frames, replace
        folder = target.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            remove_stale_partials(target)
            fd, self.tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=PARTIAL, dir=folder)
        except OSError as exc:
            raise BadInput(f"{folder}: cannot write stems here ({exc.strerror}); write them to a cache folder "
                           "instead: --set stems.cache_dir=PATH") from None
        self.handle = os.fdopen(fd, "wb")
        self.file = None
        try:
            self.file = soundfile.SoundFile(self.handle, mode="w", samplerate=rate, channels=channels,
                                            format="FLAC", subtype=SUBTYPE)
            self.resampler = None
            if model_rate != rate:
                import soxr

                self.resampler = soxr.ResampleStream(model_rate, rate, channels, dtype="float32", quality="HQ")
        except BaseException:
            self.abort()
            raise
        self.written = 0
        self.over = 0

    def write(self, stem: np.ndarray) -> None:
        """The next frames, ``[frames, 2]`` at the model's rate."""
        data = stem.mean(axis=1, keepdims=True) if self.channels == 1 else stem
        data = np.ascontiguousarray(data, dtype=np.float32)
        if self.resampler is not None:
            data = self.resampler.resample_chunk(data, last=False)
        self._put(data)

    def _put(self, data: np.ndarray) -> None:
        data = data[:max(0, self.frames - self.written)]  # resampling may give a frame more in all
        if not len(data):
            return
        self.over += int(np.count_nonzero(np.abs(data) > 1.0))
        try:
            self.file.write(np.clip(data, -1.0, 1.0))
        except Exception as exc:  # soundfile raises its own error type for a full disk
            raise BackendError(f"{self.target}: cannot write the stem ({exc})") from None
        self.written += len(data)

    def finish(self) -> int:
        """Close, fsync and publish; returns the samples beyond full scale."""
        try:
            if self.resampler is not None:
                self._put(self.resampler.resample_chunk(np.zeros((0, self.channels), np.float32), last=True))
            if self.written < self.frames:  # or a frame less
                self._put(np.zeros((self.frames - self.written, self.channels), np.float32))
            self.file.close()
            self.handle.flush()
            os.fsync(self.handle.fileno())
            self.handle.close()
            if self.replace:
                os.replace(self.tmp, self.target)
            else:
                try:
                    os.link(self.tmp, self.target)
                except FileExistsError:
                    raise
                except OSError:  # a file system without hard links: check, then rename
                    if self.target.exists():
                        raise FileExistsError(str(self.target)) from None
                    os.replace(self.tmp, self.target)
        except FileExistsError:
            raise
        except OSError as exc:
            raise BackendError(f"{self.target}: cannot write the stem ({exc.strerror})") from None
        finally:
            self.abort()
        _fsync_folder(self.target.parent)
        return self.over

    def abort(self) -> None:
        """Drop what was written (a retry, a failure); the target is untouched. Idempotent."""
        try:
            if self.file is not None and not self.file.closed:
                self.file.close()
        except Exception:
            pass
        if not self.handle.closed:
            self.handle.close()
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


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
