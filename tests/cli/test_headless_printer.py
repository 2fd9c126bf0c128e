"""The headless printer says a broken file's error once per track, not once per module that read it."""
from __future__ import annotations

import io

from rich.console import Console

from tui.headless import HeadlessPrinter
from tui.run import events as ev

MODULES = ["audio_info", "chroma", "loudness"]
BROKEN = "/data/Bad - Random/full_mix.flac: not decodable audio (Format not recognised.)"


def _run(live: bool, capsys) -> str:
    out = io.StringIO()
    printer = HeadlessPrinter(Console(file=out, width=200, force_terminal=live), live=live)
    printer(ev.RunStarted(dataset="/data", profile="cpu", modules=MODULES, tracks=2,
                          planned={m: 2 for m in MODULES}, skipped={}, log_dir="/data/.mirdeck/runs/x"))
    for module in MODULES + ["audio_info"]:  # audio_info's retry fails the same way
        printer(ev.ModuleFailed(track="Bad - Random", module=module, kind="bad_input", message=BROKEN))
    printer(ev.ModuleFailed(track="Other", module="chroma", kind="bad_input", message="/data/Other: too short"))
    printer(ev.ModuleFailed(track="Other", module="loudness", kind="crashed", message="worker died"))
    printer(ev.TrackFinished(track="Bad - Random", ok=[], failed=MODULES, audio_seconds=0.0))
    printer(ev.TrackFinished(track="Other", ok=["audio_info"], failed=["chroma", "loudness"], audio_seconds=3.0))
    if printer.progress is not None:
        printer.progress.stop()
    return out.getvalue() + capsys.readouterr().out


def test_one_line_per_broken_file_and_each_distinct_error_kept(capsys):
    text = _run(False, capsys)
    assert text.count("not decodable audio") == 1
    assert "[1/2] Bad - Random: failed: audio_info, chroma, loudness" in text
    assert "too short" in text and "worker died" in text
    assert "also in" not in text  # the track's own line already names every module


def test_with_the_progress_bar_the_other_modules_are_named_when_the_track_ends(capsys):
    text = _run(True, capsys)
    assert text.count("not decodable audio") == 1
    assert "Bad - Random: bad_input also in chroma, loudness\n" in text
    assert "Other: bad_input also in" not in text and "Other: crashed also in" not in text
