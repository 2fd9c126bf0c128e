"""The dashboard on a run that another process owns (``mirdeck attach``, ``mirdeck serve``).

The same app and screens as a local run; the event source is a ``tui.service.client.RemoteRun``
instead of an engine. What differs is what leaving means: quitting (``q``, ctrl+c) or detaching
(``d``) closes this client only and the run goes on; ``s``/``S``/space stop or pause the run
itself, for every client. No run log is written here: the service writes it.
"""
from __future__ import annotations

import asyncio

from textual.binding import Binding

from tui.dashboard.app import MirdeckApp


class AttachedApp(MirdeckApp):
    BINDINGS = [
        Binding("ctrl+c", "detach", "detach", show=False, priority=True),
        Binding("d", "detach", "detach"),
        Binding("question_mark", "help", "help", show=False),
    ]

    def __init__(self, remote, **kwargs):
        super().__init__(engine=remote, **kwargs)
        self.sub_title = f"attached to {remote.dataset} (service pid {remote.record.pid})"

    def start_engine(self, engine) -> None:
        self.engine = engine
        engine.subscribe(self.view)
        engine.on_control(self._control_changed)
        self.run_task = asyncio.create_task(self._run_engine())

    def _control_changed(self, state: dict) -> None:
        view = self.view
        if state["paused"] != view.paused:
            view.set_paused(state["paused"])
            if state["by"] != "service":
                view.add_log("info", "", "paused by another client" if state["paused"] else "resumed")
        if state["stopping"] and state["stopping"] != view.stopping:
            view.stopping = state["stopping"]
            if state["by"] != "service":
                view.add_log("warning" if state["stopping"] == "immediate" else "info", "",
                             f"stop requested ({state['stopping']}) by another client")

    def action_request_quit(self) -> None:
        self.action_detach()

    def action_detach(self) -> None:
        """Leave: this client closes, the run goes on (``mirdeck attach`` comes back to it)."""
        self.exit(self.exit_code)

    async def shutdown_engine(self) -> None:
        if self.run_task is not None and not self.run_task.done():
            self.run_task.cancel()
            await asyncio.wait({self.run_task}, timeout=2)


def run_attached(remote) -> int:
    app = AttachedApp(remote)
    result = app.run()
    if app.view.finished_at is None:
        print(f"mirdeck: detached; the run goes on (mirdeck attach {remote.dataset})")
    return result if isinstance(result, int) else app.exit_code


def show_message(text: str) -> int:
    """A page that only says ``text`` (a browser tab opened when no run is in progress)."""
    from textual.app import App, ComposeResult
    from textual.widgets import Footer, Static

    class MessageApp(App):
        TITLE = "mirdeck"
        BINDINGS = [Binding("q", "quit", "quit")]

        def compose(self) -> ComposeResult:
            yield Static(text, id="message")
            yield Footer()

    MessageApp().run()
    return 1
