"""The view of one track that an extractor's ``process`` receives."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from backends.protocol import BadInput

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Source:
    """One audio file of the track (the mix or a stem) and its decoded PCM files."""

    name: str
    path: str
    sample_rate: int
    channels: int
    frames: int
    pcm: dict[str, str]  # "native" or a rate in Hz -> .npy path

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


@dataclass
class Track:
    request_id: str
    folder: Path
    name: str
    sources: dict[str, Source]
    inputs: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    """Facts about the whole run (the protocol's ``run``: ``longest_mix_seconds``); may be empty."""
    send_progress: Callable[[float, str], None] = lambda fraction, stage: None
    notes: dict[str, str] = field(default_factory=dict)
    """Why a feature is null or absent, per key; the worker copies it into provenance."""

    @classmethod
    def from_request(cls, message: dict[str, Any],
                     send_progress: Callable[[float, str], None] | None = None) -> "Track":
        track = message["track"]
        sources = {name: Source(name=name, **info) for name, info in message["sources"].items()}
        return cls(request_id=message["id"], folder=Path(track["folder"]), name=track["name"],
                   sources=sources, inputs=message.get("inputs", {}),
                   options=message.get("options", {}), run=message.get("run", {}),
                   send_progress=send_progress or (lambda fraction, stage: None))

    @property
    def mix(self) -> Source:
        return self.sources["mix"]

    def has(self, source: str) -> bool:
        return source in self.sources

    def audio(self, source: str = "mix", sample_rate: int | None = None) -> tuple[np.ndarray, int]:
        """Decoded PCM ``[frames, channels]`` float32 (read-only map) and its sample rate."""
        from backends.audio import load_pcm

        src = self.sources.get(source)
        if src is None:
            raise BadInput(f"{self.folder}: no {source} audio in this track")
        key = "native" if sample_rate is None else str(sample_rate)
        if key not in src.pcm:
            raise RuntimeError(f"the engine did not decode {source} at {key} Hz; "
                               "the backend's SPEC.audio must declare it")
        return load_pcm(src.pcm[key]), (src.sample_rate if sample_rate is None else sample_rate)

    def note(self, key: str, reason: str) -> None:
        """Record why ``key`` holds null (or is absent); it lands in the module's provenance."""
        self.notes[key] = reason

    def progress(self, fraction: float, stage: str = "") -> None:
        self.send_progress(fraction, stage)

    def sidecar_path(self, suffix: str) -> Path:
        return self.folder / f"{self.name}.{suffix}"

    def write_sidecar(self, suffix: str, text: str) -> str:
        """Atomically write ``<folder>/<name>.<suffix>``; returns its path."""
        target = self.sidecar_path(suffix)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return str(target)
