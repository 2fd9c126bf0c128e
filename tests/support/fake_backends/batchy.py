"""Batches tracks (``tracks_per_call``): answers each track with its own frame count, says which
tracks shared its call (after option ``sleep`` seconds per call); '*bad*' tracks are bad input,
'*crash*' tracks kill the worker."""
import os
import signal
import time

from backends.protocol import BadInput
from backends.spec import AudioNeed, BackendSpec, Extractor, Result
from backends.track import Track

SPEC = BackendSpec(name="batchy", version="1", description="test: several tracks per call",
                   keys=("batchy_frames",), audio=(AudioNeed("mix", None),), device="gpu", vram_gb=1.0,
                   tracks_per_call=3, vram_per_extra_track_gb=1.0, runtime_options=("tracks_per_call",),
                   timeout_s=60)


class Batchy(Extractor):
    def process(self, track: Track) -> Result:
        result = self.process_batch([track])[0]
        if isinstance(result, Exception):
            raise result  # alone, a track's failure is raised as any backend's is
        return result

    def process_batch(self, tracks: list[Track]) -> list:
        if any("crash" in t.name for t in tracks):
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(float(tracks[0].options.get("sleep", 0.0)))
        names = sorted(t.name for t in tracks)
        out = []
        for track in tracks:
            track.progress(0.5, "together")
            if "bad" in track.name:
                out.append(BadInput(f"{track.mix.path}: batchy refuses tracks named bad"))
                continue
            out.append(Result({"batchy_frames": track.mix.frames}, provenance={"call_tracks": names}))
        return out


def create():
    return Batchy()
