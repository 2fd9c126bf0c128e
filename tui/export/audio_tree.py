"""The per-audio layout the sidecar formats share: ``OUT/audio/<track>/<mix file>`` is a symbolic
link to the track's mix, and the sidecar sits beside it with the same stem. The trainers look
for the sidecar next to the audio path they are given; links keep the dataset untouched and the
export removable in one ``rm -r``."""
from __future__ import annotations

from tui.export.features import TrackRecord
from tui.export.output import Output

AUDIO_DIR = "audio"


def audio_rel(record: TrackRecord) -> str:
    return f"{AUDIO_DIR}/{record.name}/{record.audio.name}"


def sidecar_rel(record: TrackRecord, suffix: str = ".json") -> str:
    return f"{AUDIO_DIR}/{record.name}/{record.audio.stem}{suffix}"


def link_audio(record: TrackRecord, out: Output) -> str:
    rel = audio_rel(record)
    out.link(rel, record.audio)
    return rel
