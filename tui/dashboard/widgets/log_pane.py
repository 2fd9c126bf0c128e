"""The run log: engine messages and the workers' stderr, filtered by level and module."""
from __future__ import annotations

import time
from itertools import islice, takewhile

from rich.text import Text
from textual.widgets import RichLog

from tui.dashboard.runview import LEVELS, LogEntry, RunView

LEVEL_STYLE = {"stderr": "dim", "info": "", "warning": "yellow", "error": "bold red"}
LEVEL_WORD = {"stderr": "all", "info": "info+", "warning": "warnings+", "error": "errors"}


def entry_text(entry: LogEntry) -> Text:
    text = Text()
    text.append(time.strftime("%H:%M:%S ", time.localtime(entry.time)), style="dim")
    text.append(f"{(entry.module or 'mirdeck'):<13} ", style="bold")
    tag = "stderr" if entry.level == "stderr" else entry.level
    text.append(f"{tag:<8}", style=LEVEL_STYLE[entry.level])
    message = f"{entry.track}: {entry.message}" if entry.track and entry.track not in entry.message else entry.message
    text.append(message, style=LEVEL_STYLE[entry.level] if entry.level != "info" else "")
    return text


class LogPane(RichLog):
    """Appends only entries newer than the last one shown; a filter change rewrites the pane."""

    DEFAULT_CSS = "LogPane { height: 1fr; min-height: 5; border: round $primary; }"

    def __init__(self, **kwargs):
        super().__init__(max_lines=2000, wrap=False, markup=False, highlight=False, **kwargs)
        self.min_level = "info"
        self.module = ""
        self._last_seq = 0

    def on_mount(self) -> None:
        self._title()

    def _title(self) -> None:
        self.border_title = (f"log · {self.module or 'all modules'} · {LEVEL_WORD[self.min_level]}"
                             "  (l level, m module)")

    def set_filter(self, view: RunView, *, min_level: str | None = None, module: str | None = None) -> None:
        if min_level is not None:
            self.min_level = min_level
        if module is not None:
            self.module = module
        self._title()
        self.clear()
        self._last_seq = 0
        self.render_view(view)

    def cycle_level(self, view: RunView) -> None:
        self.set_filter(view, min_level=LEVELS[(LEVELS.index(self.min_level) + 1) % len(LEVELS)])

    def cycle_module(self, view: RunView) -> None:
        names = [""] + list(view.modules) + ["decode"]
        nxt = names[(names.index(self.module) + 1) % len(names)] if self.module in names else ""
        self.set_filter(view, module=nxt)

    def render_view(self, view: RunView) -> None:
        floor = LEVELS.index(self.min_level)
        # Newest first, stopping at the first entry already shown: cost follows what is new.
        fresh = list(islice(takewhile(lambda e: e.seq > self._last_seq, reversed(view.log)), 2000))
        if not fresh:
            return
        self._last_seq = fresh[0].seq
        for entry in reversed(fresh):
            if LEVELS.index(entry.level) >= floor and (not self.module or entry.module == self.module):
                self.write(entry_text(entry))
