"""The help screen and the A/B placeholder."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static

KEYS = [
    ("live run", ""),
    ("s", "stop gracefully: finish the tracks in flight, shut workers down cleanly"),
    ("S", "stop now: kill the workers; tracks in flight are left for the next run"),
    ("space", "pause (no new requests start) / resume"),
    ("t", "open the track detail (the newest failure first)"),
    ("l / m", "log: cycle the level filter / the module filter"),
    ("a", "A/B view of the two Flamingo back ends"),
    ("q, ctrl+c", "quit (while running: stop gracefully first; twice: stop now)"),
    ("set-up", ""),
    ("space / o", "module checklist: run this module / overwrite its done tracks"),
    ("ctrl+s", "start the run"),
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


class ABScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "back")]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text.assemble(
                ("A/B view\n\n", "bold"),
                "Shows the texts of the two Music Flamingo back ends (GGUF through llama-mtmd-cli and "
                "full transformers) side by side per prompt, with their timings and GPU memory.\n\n",
                ("Not available yet: this build has no Flamingo back end installed, so there is "
                 "nothing to compare. It appears here once both back ends exist and a run uses "
                 "the A/B choice on the set-up screen.", "yellow")), id="ab-text")
        yield Footer()
