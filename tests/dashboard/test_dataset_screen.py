"""The dashboard's dataset screen: terminal charts and a sortable track table from the .INFO files,
following them as they change during a run, opening the track detail."""
from __future__ import annotations

import json

import pytest

from tests.support.dashboard import sync, wait_for
from tests.support.synthetic_infos import make
from tui.dashboard.app import MirdeckApp
from tui.dashboard.screens.dataset import DatasetScreen
from tui.dashboard.screens.track import TrackScreen
from tui.dashboard.widgets.charts import histogram_lines
from tui.run.store import merge

SIZE = (140, 44)


def infos(dataset):
    return {f.parent.name: json.loads(f.read_text(encoding="utf-8")) for f in dataset.glob("*/*.INFO")}


def table_names(screen) -> list[str]:
    from textual.widgets import DataTable

    table = screen.query_one(DataTable)
    return [str(table.coordinate_to_cell_key((i, 0)).row_key.value) for i in range(table.row_count)]


def test_terminal_histogram_columns_follow_the_counts():
    rows = histogram_lines([1, 1, 1, 1, 2, 2, 3, 4, 4, 4, 4, 4, 4, 4, 4], bins=4, height=2)
    # counts 4, 2, 1, 8 over 2 rows of 8 eighths: 8, 4, 2, 16 eighths
    assert rows == ["   █", "█▄▂█"]


async def open_dataset_screen(pilot, app):
    app.action_dataset()
    await wait_for(pilot, lambda: isinstance(app.screen, DatasetScreen) and app.screen.stats is not None,
                   what="the dataset screen to read the .INFO files")
    return app.screen


@sync
async def test_sorts_by_any_column_and_opens_the_track(tmp_path):
    dataset = make(tmp_path / "set", 30)
    app = MirdeckApp(dataset=dataset)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_dataset_screen(pilot, app)
        assert screen.stats.tracks == 30
        assert table_names(screen) == sorted(infos(dataset))
        for _ in range(4):  # track -> duration -> LUFS -> LRA -> BPM
            await pilot.press("s")
        assert screen.sort_column == "bpm"
        by_bpm = sorted(infos(dataset).items(), key=lambda kv: kv[1]["bpm"])
        assert table_names(screen) == [name for name, _ in by_bpm]
        await pilot.press("r")
        assert table_names(screen)[0] == by_bpm[-1][0]
        await pilot.press("ctrl+home", "enter")  # sorting keeps the cursor on its track; go to the top
        await wait_for(pilot, lambda: isinstance(app.screen, TrackScreen), what="the track detail")
        assert app.screen.selected == by_bpm[-1][0]


@sync
async def test_follows_the_info_files_as_a_run_changes_them(tmp_path):
    dataset = make(tmp_path / "set", 12)
    app = MirdeckApp(dataset=dataset)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_dataset_screen(pilot, app)
        name = sorted(infos(dataset))[3]
        merge(dataset / name, "rhythm", features={"bpm": 250.0}, provenance={"status": "ok", "version": "1"})
        app.view.version += 1  # what an engine event does
        await wait_for(pilot, lambda: 250.0 in screen.stats.values["bpm"], what="the changed .INFO to be read")
        assert screen.reader.reread == 1  # only the changed file


@pytest.mark.parametrize("size", [(140, 44), (100, 30)])
def test_dataset_screen_snapshot(snap_compare, tmp_path, size):
    dataset = make(tmp_path / "goa-set", 40)

    async def open_it(pilot):
        await open_dataset_screen(pilot, pilot.app)
        await pilot.pause()

    assert snap_compare(MirdeckApp(dataset=dataset), terminal_size=size, run_before=open_it)
