"""What a new user saw wrong on the screens (issue 15, section 8), each checked on the screen
as drawn: the text of the rendered lines, at the terminal sizes where it went wrong."""
from __future__ import annotations

from tests.dashboard.test_snapshots import NOW, T0, scripted_view
from tests.support.dashboard import sync, tiny_dataset, wait_for
from tui.dashboard.app import MirdeckApp
from tui.dashboard.widgets.log_pane import LogPane
from tui.run import events as ev

SAME_PREFIX = "Some Long Artist Name - A Very Long Album Title - Part "


def screen_lines(widget) -> list[str]:
    return [widget.render_line(y).text for y in range(widget.size.height)]


def visible(app, widget) -> int:
    """Rows of ``widget`` the user can see on the screen now."""
    for shown, (region, clip) in app.screen._compositor.visible_widgets.items():
        if shown is widget:
            return region.intersection(clip).height
    return 0


@sync
async def test_at_100_columns_tracks_with_one_prefix_differ_and_the_skip_column_stays():
    view = scripted_view()
    for n in (1, 2):
        view(ev.TrackStarted(track=f"{SAME_PREFIX}{n}", modules=["rhythm"], time=NOW - 10))
        view(ev.ModuleStarted(track=f"{SAME_PREFIX}{n}", module="rhythm", worker_pid=1, time=NOW - 9))
    app = MirdeckApp(view=view, clock=lambda: NOW, probe_interval=0)
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.pause(0.3)
        table = app.screen.query_one("#modules")
        assert "skip" in screen_lines(table)[0]
        assert table.cells("audio_info")[4] == "3,126", "a module whose tracks were done reads skip 3,126"
        rows = [line for line in screen_lines(app.screen.query_one("#in-flight")) if "Some Long" in line]
        names = [line.split(" rhythm")[0].strip() for line in rows]
        assert len(names) == 2 and names[0] != names[1] and names[0].endswith("Part 1")


@sync
async def test_finished_in_says_how_long_the_run_was_paused():
    now = [T0]
    app = MirdeckApp(view=scripted_view(), clock=lambda: now[0], probe_interval=0)
    view = app.view
    view.clock = lambda: now[0]
    now[0] = NOW
    view.set_paused(True)
    now[0] = NOW + 125
    view.set_paused(False)
    view(ev.RunFinished(stopped=False, wall_seconds=879.0, summary={}, time=NOW + 125))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.3)
        header = "\n".join(screen_lines(app.screen.query_one("#run-header")))
        assert "finished in 12 m 34 s + 2 m 05 s paused" in header


@sync
async def test_the_log_stays_on_screen_and_follows_new_lines_on_a_small_terminal():
    view = scripted_view()
    app = MirdeckApp(view=view, clock=lambda: NOW, probe_interval=0, refresh_hz=20)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        pane = app.screen.query_one(LogPane)
        for i in range(50):
            view.add_log("info", "", f"new line {i}", at=NOW)
            await pilot.pause(0.02)
        await pilot.pause(0.3)
        assert visible(app, pane) >= 5, "the log is on screen, not below the fold of the panels"
        assert any("new line 49" in line for line in screen_lines(pane))


@sync
async def test_setup_screen_at_160_columns_shows_the_overwrite_switch_and_q_quits(tmp_path):
    dataset = tiny_dataset(tmp_path / "ds", ["a"])
    app = MirdeckApp(dataset=dataset)
    async with app.run_test(size=(160, 45)) as pilot:
        setup = app.screen
        await wait_for(pilot, lambda: setup.summary is not None, what="the dataset scan")
        await pilot.pause(0.2)
        table = setup.query_one("#module-list")
        header = screen_lines(table)[0]
        assert "overwrite" in header and "run" in header
        # Toggling it with o changes the cell the user sees.
        table.focus()
        table.move_cursor(row=table.get_row_index("audio_info"), column=0)
        await pilot.press("o")
        await pilot.pause(0.1)
        row = next(line for line in screen_lines(table) if "audio_info" in line)
        assert row.split("audio_info")[0].count("[x]") == 2 and setup.overwrite["audio_info"]
        # q in the dataset field is a letter; elsewhere it quits.
        setup.query_one("#dataset").focus()
        await pilot.press("q")
        await pilot.pause(0.1)
        assert app.is_running and setup.query_one("#dataset").value.endswith("q")
        table.focus()
        await pilot.press("q")
        await pilot.pause(0.3)
    assert app.return_code == 0
    assert "quit" in {b.description for b in setup.BINDINGS if b.key == "q"}


@sync
async def test_in_flight_durations_of_minutes_are_shown_whole():
    """A track in flight for 1 m 14 s, 12 m 05 s: the whole time in its column, at 80 and 120."""
    view = scripted_view()
    for name, ago in (("Long Track A", 74), ("Long Track B", 725)):
        view(ev.TrackStarted(track=name, modules=["rhythm"], time=NOW - ago))
        view(ev.ModuleStarted(track=name, module="rhythm", worker_pid=1, time=NOW - ago + 1))
    for size in ((80, 30), (120, 40)):
        app = MirdeckApp(view=view, clock=lambda: NOW, probe_interval=0)
        async with app.run_test(size=size) as pilot:
            await pilot.pause(0.3)
            lines = screen_lines(app.screen.query_one("#in-flight"))
            shown = {name: line for line in lines for name in ("Long Track A", "Long Track B") if name in line}
            assert shown["Long Track A"].rstrip(" │╯╮").endswith("1 m 14 s"), (size, shown)
            assert shown["Long Track B"].rstrip(" │╯╮").endswith("12 m 05 s"), (size, shown)
