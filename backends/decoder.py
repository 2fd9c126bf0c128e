"""The decode step: each needed (source, sample rate) of a track decoded once and shared.

Run by the same worker loop as the extractors but not listed in the registry: the engine asks it
to decode a track's files at the rates its planned modules declared, and passes the resulting
``.npy`` paths to every module of that track. Asked with option ``probe`` (key -> path), it reads
only the files' headers and answers their durations (seconds, or null).
"""
from __future__ import annotations

import os
from pathlib import Path

from backends.protocol import BackendError
from backends.spec import BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="decode", version="1", description="decode and resample, once per track",
                   keys=(), audio=())


class Decoder(Extractor):
    def process(self, track: Track) -> Result:
        from backends.audio import decode_file, probe_duration, resample, write_pcm

        if "probe" in track.options:  # durations from the headers, for modules sized by the longest track
            return Result({"durations": {key: probe_duration(path) for key, path in track.options["probe"].items()}})
        cache = Path(track.options["cache_dir"])
        cache.mkdir(parents=True, exist_ok=True)
        decoded, errors = {}, {}
        for source, job in track.options["decode"].items():
            try:
                data, rate = decode_file(job["path"])
            except BackendError as exc:
                errors[source] = {"kind": exc.kind.value, "message": exc.message}
                continue
            pcm = {}
            for wanted in job["rates"]:
                key = "native" if wanted in (None, "native") else str(int(wanted))
                target = cache / f"{source}@{key}.npy"
                write_pcm(target, data if key == "native" else resample(data, rate, int(key)))
                pcm[key] = str(target)
            decoded[source] = {"path": job["path"], "sample_rate": rate,
                               "channels": int(data.shape[1]), "frames": int(data.shape[0]),
                               "pcm": pcm}
            del data
        return Result({"sources": decoded, "errors": errors, "pid": os.getpid()})


def create() -> Decoder:
    return Decoder()
