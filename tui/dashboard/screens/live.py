"""The live-run screen: progress, modules, text generation, in flight, GPU, CPU/RAM, log, latest track.

Redraws on a timer (``App.refresh_hz``, 4 Hz by default) and only when the view changed; the
GPU and host probes are read in a thread so a slow driver never blocks the screen.
"""
from __future__ import annotations

import asyncio
import gc

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer

from tui.dashboard.widgets.decode_panel import DecodePanel
from tui.dashboard.widgets.log_pane import LogPane
from tui.dashboard.widgets.module_table import ModuleTable
from tui.dashboard.widgets.panels import GpuPanel, HostPanel, InFlightPanel, LatestPanel
from tui.dashboard.widgets.run_header import RunHeader

NARROW = 100  # below this many columns the side panels go under the main ones


class LiveRunScreen(Screen):
    BINDINGS = [
        Binding("s", "app.stop_graceful", "stop"),
        Binding("S", "app.stop_now", "stop now"),
        Binding("space", "app.toggle_pause", "pause/resume"),
        Binding("t", "open_track", "track"),
        Binding("v", "app.dataset", "dataset view", show=False),
        Binding("l", "cycle_level", "log level"),
        Binding("m", "cycle_module", "log module"),
        Binding("a", "app.ab", "A/B", show=False),
        Binding("question_mark", "app.help", "help"),
        Binding("q", "app.request_quit", "quit"),
    ]

    def compose(self) -> ComposeResult:
        yield RunHeader(id="run-header")
        with VerticalScroll(id="run-body"):
            with Horizontal(id="run-top"):
                with Vertical(id="run-main"):
                    yield ModuleTable(id="modules")
                    yield DecodePanel(id="decode-rates")
                    yield InFlightPanel(id="in-flight")
                with Vertical(id="run-side"):
                    yield GpuPanel(id="gpu")
                    yield HostPanel(id="host")
                    yield LatestPanel(id="latest")
        # The log is outside the scrolling body: on a narrow screen the panels above scroll, and
        # the log stays in sight following its newest lines (inside, it sat below the fold).
        yield LogPane(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self._shown_version = -1
        self._latest_features: dict = {}
        self._latest_for = ""
        self.set_class(self.app.size.width < NARROW, "narrow")
        # The app's long-lived objects (DOM, styles, the view) moved out of the collector's sight:
        # every frame allocates many short-lived strips, and each full collection would walk the
        # ~100k objects Textual keeps alive (a few % of a core at 4 Hz in benchmarks/dashboard.py).
        self.call_after_refresh(gc.freeze)
        self.redraw()
        self.set_interval(1 / self.app.refresh_hz, self.redraw)
        if self.app.probe_interval > 0:
            self.set_interval(self.app.probe_interval, self.read_probes)
            self.call_after_refresh(self.read_probes)

    def on_resize(self, event) -> None:
        self.set_class(event.size.width < NARROW, "narrow")
        self._shown_version = -1
        # Panels are laid out to the new size only after this refresh: draw them then, not at the
        # next tick, so what is on screen never depends on how soon that tick comes.
        self.call_after_refresh(self.redraw)

    async def read_probes(self) -> None:
        view = self.app.view
        try:
            gpu, host = await asyncio.to_thread(self.app.read_probes, view.worker_pids())
        except Exception as exc:  # a probe bug must not take the run down; say so in the log
            view.add_log("warning", "", f"GPU/host probe failed: {exc!r}")
            return
        view.note_gpu(gpu)
        view.note_host(host)
        if view.latest_track and view.latest_track != self._latest_for:
            self._latest_for = view.latest_track
            self._latest_features = await asyncio.to_thread(self.app.read_features, view.latest_track)

    def redraw(self) -> None:
        view = self.app.view
        now = self.app.clock()
        header = self.query_one(RunHeader)
        header.render_view(view, now, self.size.width)  # the clock and ETA move every tick
        if view.version == self._shown_version:
            return
        side_width = self.query_one("#run-side").size.width
        main_width = self.query_one("#run-main").size.width
        # Before the first layout the columns have no width yet: draw to a guess, and again once laid out.
        self._shown_version = view.version if side_width and main_width else -1
        side_width = side_width or 34
        main_width = main_width or max(40, self.size.width - 34)
        self.query_one(ModuleTable).render_view(view, main_width - 3)
        self.query_one(DecodePanel).render_view(view, main_width - 3)
        self.query_one(InFlightPanel).render_view(view, now, main_width - 4)
        self.query_one(GpuPanel).render_view(view, side_width - 2)
        self.query_one(HostPanel).render_view(view, side_width - 2)
        # Features only under the name of the track they were read from (they are read once a second).
        features = self._latest_features if self._latest_for == view.latest_track else {}
        self.query_one(LatestPanel).render_view(view, features, side_width - 2, now)
        self.query_one(LogPane).render_view(view)

    def action_cycle_level(self) -> None:
        self.query_one(LogPane).cycle_level(self.app.view)

    def action_cycle_module(self) -> None:
        self.query_one(LogPane).cycle_module(self.app.view)

    def action_open_track(self) -> None:
        view = self.app.view
        # The newest track with a failure, else the latest finished, else one in flight.
        track = next(reversed(view.errors), "") if view.errors else view.latest_track
        if not track and view.in_flight:
            track = next(iter(view.in_flight))
        self.app.action_track(track)
