"""The dashboard's A/B view: reports written by ``tui.ab.run`` shown side by side, and an A/B started
from the set-up screen running both Flamingo back ends through the real code (the transformers
stand-in answers; the GGUF side has no weights here and must say so)."""
from __future__ import annotations

import json
import os

import pytest

from tests.support.ab_reports import write_report
from tests.support.dashboard import plain, sync, tiny_dataset, wait_for
from tui.ab.progress import ABProgress, evenly_spaced
from tui.ab.reports import dataset_ab_dir, find_reports, load_report
from tui.dashboard.app import MirdeckApp
from tui.dashboard.screens.ab import ABScreen

SIZE = (120, 40)


def test_evenly_spaced_covers_the_whole_dataset():
    items = list(range(10))
    assert evenly_spaced(items, 3) == [0, 4, 9] or evenly_spaced(items, 3) == [0, 5, 9]
    assert evenly_spaced(items, 1) == [0] and evenly_spaced(items, 0) == []
    assert evenly_spaced(items, 20) == items
    assert len(set(evenly_spaced(items, 7))) == 7


def test_reports_are_found_newest_first_and_a_broken_track_report_is_named(tmp_path):
    dataset = tmp_path / "ds"
    old = write_report(dataset_ab_dir(dataset) / "20260101-000000")
    new = write_report(tmp_path / "cwd" / "mirdeck-ab" / "20260102-000000", tracks=("Gamma",))
    os.utime(old / "summary.json", (1_000_000, 1_000_000))
    assert find_reports(dataset, tmp_path / "cwd") == [new.resolve(), old.resolve()]
    (old / "Beta.json").write_text("{ not json")
    report = load_report(old)
    assert [t["track"] for t in report.tracks] == ["Alpha"]
    assert len(report.problems) == 1 and "Beta.json" in report.problems[0]


def test_progress_counts_each_back_end_from_engine_events(tmp_path):
    from tui.run import events as ev

    progress = ABProgress(2, tmp_path)
    progress(ev.ModuleStarted(time=1.0, track="Alpha", module="flamingo_hf", worker_pid=1))
    assert "now transformers on Alpha" in progress.line(2.0)
    progress(ev.ModuleFinished(time=2.0, track="Alpha", module="flamingo_hf", audio_seconds=5.0,
                               wall_seconds=1.0, realtime_factor=5.0, keys=6))
    progress(ev.ModuleFailed(time=3.0, track="Beta", module="flamingo_gguf", kind="model_missing",
                             message="no weights", attempt=1))
    assert progress.done == {"gguf": 0, "hf": 1} and progress.failed == {"gguf": 1, "hf": 0}
    assert "Beta: model_missing: no weights" in progress.last_error
    progress.finished = 10.0
    assert progress.line().startswith("A/B finished")


@sync
async def test_ab_view_shows_both_texts_per_prompt_and_switches_track_and_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dataset = tmp_path / "ds"
    dataset.mkdir()
    older = write_report(tmp_path / "mirdeck-ab" / "20260101-000000", tracks=("Old",),
                         gguf_fails="flamingo_gguf: model 'music_flamingo_q8_0' is not installed")
    os.utime(older / "summary.json", (1_000_000, 1_000_000))
    write_report(dataset_ab_dir(dataset) / "20260102-000000")
    app = MirdeckApp(dataset=dataset)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+p")  # the palette reaches the A/B view from any screen
        await pilot.press(*"A/B view")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ABScreen), what="the A/B view")
        screen = app.screen
        await pilot.pause()
        head, detail = plain(screen.query_one("#ab-head")), plain(screen.query_one("#ab-detail"), 110)
        assert "2 tracks, 2 answered by both" in head and "transformers_bf16" in head and "gguf_Q8_0" in head
        assert "Alpha: deep house at 124 BPM" in detail and "Alpha: a deep house groove" in detail
        assert "tempo agree (124 / 124 BPM)" in detail and "key agree" in detail
        screen.query_one("#ab-tracks").focus()
        await pilot.press("down")
        await pilot.pause()
        detail = plain(screen.query_one("#ab-detail"), 110)
        assert "Beta: deep house" in detail and "Alpha:" not in detail
        await pilot.press("left_square_bracket")  # the older report: its GGUF side failed
        await pilot.pause()
        head, detail = plain(screen.query_one("#ab-head")), plain(screen.query_one("#ab-detail"), 110)
        assert "mirdeck-ab/20260101-000000" in head and "0 answered by both" in head
        assert "GGUF (llama.cpp) failed: flamingo_gguf: model 'music_flamingo_q8_0' is not installed" in detail
        assert "(no answer)" in detail


@sync
async def test_the_winner_is_chosen_in_the_ab_view_after_a_question_and_written_into_the_dataset(tmp_path,
                                                                                                 monkeypatch):
    from tests.support.ab_reports import write_report_with_mirrors
    from tui.dashboard.screens.ab import WinnerScreen
    from tui.run.store import read_info

    monkeypatch.chdir(tmp_path)
    dataset = tmp_path / "ds"
    write_report_with_mirrors(dataset_ab_dir(dataset) / "20260103-000000", dataset)
    infos = [dataset / name / f"{name}.INFO" for name in ("Alpha", "Beta")]
    app = MirdeckApp(dataset=dataset)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.action_ab()
        await wait_for(pilot, lambda: isinstance(app.screen, ABScreen), what="the A/B view")
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, WinnerScreen), what="the question")
        question = plain(app.screen.query_one("Static"), 90)
        assert "GGUF (llama.cpp): 2 of 2 tracks answered" in question and "cancel: nothing is written" in question
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ABScreen), what="the A/B view again")
        assert not any(path.exists() for path in infos)  # cancelled: nothing written
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, WinnerScreen), what="the question")
        await pilot.press("h")
        await wait_for(pilot, lambda: all(path.exists() for path in infos), what="the .INFO files")
        await pilot.pause()
        notes = [str(n.message) for n in app._notifications]
    assert any("wrote the transformers answers into 2 tracks' .INFO files" in n for n in notes), notes
    for path, name in zip(infos, ("Alpha", "Beta")):
        info = read_info(path)
        assert info["music_flamingo_full"] == f"{name}: hf says full"
        assert info["_mirdeck"]["flamingo_hf"]["chosen_by"] == "mirdeck dashboard A/B view, winner hf"


@sync
async def test_ab_view_without_reports_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = MirdeckApp(dataset=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.action_ab()
        await pilot.pause()
        assert "No A/B report yet" in plain(app.screen.query_one("#ab-head"))
        assert "mirdeck ab" in plain(app.screen.query_one("#ab-head"))


@pytest.mark.slow
@pytest.mark.timeout(900)
@sync
async def test_ab_started_from_setup_runs_after_the_run_and_never_writes_flamingo_keys(tmp_path, monkeypatch):
    from tests.support.flamingo_hf_standin import small_prompts, standin
    from tui.ab.run import ABOptions

    monkeypatch.chdir(tmp_path)
    dataset = tiny_dataset(tmp_path / "ds", ["Alpha", "Beta", "Gamma"], seconds=3.0)
    options = ABOptions(prompts_file=small_prompts(tmp_path / "p.toml", temperature=0.0),
                        backend_options={"hf": {"model_dir": str(standin("audioflamingo3"))},
                                         "gguf": {"model_file": str(tmp_path / "none.gguf"),
                                                  "mmproj_file": str(tmp_path / "none.mmproj.gguf")}})
    app = MirdeckApp(dataset=dataset, ab_options=options)
    async with app.run_test(size=SIZE) as pilot:
        setup = app.screen
        await wait_for(pilot, lambda: setup.summary is not None, what="the dataset scan")
        radios = setup.query_one("#flamingo")
        ab_button = next(b for b in radios.query("RadioButton") if b.name == "ab")
        ab_button.value = True
        await pilot.pause()
        assert setup.query_one("#ab-count").display
        setup.query_one("#ab-count").value = "2"
        for name in setup.chosen:  # audio_info runs first; the A/B follows
            setup.chosen[name] = name == "audio_info"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.ab_progress is not None, timeout=120, what="the run, then the A/B")
        await wait_for(pilot, lambda: isinstance(app.screen, ABScreen), what="the A/B view")
        await wait_for(pilot, lambda: not app.ab_progress.running, timeout=600, what="the A/B to finish")
        await pilot.pause(1.0)
        screen = app.screen
        assert "A/B finished" in plain(screen.query_one("#ab-progress"))
        head = plain(screen.query_one("#ab-head"))
        assert "2 tracks, 0 answered by both" in head and "transformers_fp32" in head
        detail = plain(screen.query_one("#ab-detail"), 110)
        assert "GGUF (llama.cpp) failed:" in detail
        report = load_report(screen.reports[screen.index])
        assert [t["track"] for t in report.tracks] == ["Alpha", "Gamma"]  # first and last of three
        assert all(t["backends"]["hf"]["ok"] for t in report.tracks)
    for name in ("Alpha", "Beta", "Gamma"):
        info = json.loads((dataset / name / f"{name}.INFO").read_text())
        assert info["_mirdeck"]["audio_info"]["status"] == "ok"
        assert not [k for k in info if k.startswith("music_flamingo")]
