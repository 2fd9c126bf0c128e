"""The help screen."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = [
    ("live run", ""),
    ("s", "stop gracefully: what the workers compute now finishes, nothing new starts; "
          "the log lists what was not processed"),
    ("S", "stop now: kill the workers; tracks in flight are left for the next run"),
    ("space", "pause (no new requests start) / resume"),
    ("t", "open the track detail (the newest failure first)"),
    ("v", "dataset view: distributions and every track, sortable (s / r / click a header; enter: detail)"),
    ("l / m", "log: cycle the level filter / the module filter"),
    ("a", "A/B view: the two Flamingo back ends' texts side by side"),
    ("q, ctrl+c", "quit (while running: stop gracefully first; twice: stop now)"),
    ("d", "detach: the run goes on in a background service (mirdeck attach comes back to it)"),
    ("attached", "q, ctrl+c and d leave; s, S, space act on the run for every client"),
    ("set-up", ""),
    ("space / o", "module checklist: run this module / overwrite its done tracks"),
    ("ctrl+s", "start the run (with Flamingo back end A/B: the comparison after it)"),
    ("q", "quit (a letter while the dataset field has focus)"),
    ("A/B view", ""),
    ("up / down", "choose the track"),
    ("[ / ]", "older / newer A/B report"),
    ("r", "look for new reports"),
    ("w", "choose the winner: its answers go into the tracks' .INFO (asked first; refused if unfair)"),
    ("everywhere", ""),
    ("ctrl+p", "command palette (every action by name)"),
    ("?", "this help; escape closes it"),
    ("mouse", "click rows, tabs, buttons; scroll any panel"),
]


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,question_mark,q", "app.pop_screen", "close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 84; max-width: 100%; height: auto; max-height: 90%;
                                  border: thick $primary; background: $surface; padding: 0 1; }
    """

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for key, text in KEYS:
            if not text:
                table.add_row(Text(key, style="bold underline"), "")
            else:
                table.add_row(key, text)
        with VerticalScroll() as scroll:
            scroll.border_title = "mirdeck keys"
            yield Static(table)
            yield Static(Text("\nRTF = audio seconds / wall seconds of a module (higher is faster). "
                              "Peak VRAM = most GPU memory the module's workers held, from the GPU probe.",
                              style="dim"))
