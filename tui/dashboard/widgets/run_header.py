"""Title line and overall progress: how far the run is and when it ends."""
from __future__ import annotations

import time

from rich.text import Text

from tui.dashboard.runview import RunView
from tui.dashboard.widgets import format as fmt
from tui.dashboard.widgets.panels import Panel


class RunHeader(Panel):
    DEFAULT_CSS = """
    RunHeader { height: 3; padding: 0 1; background: $boost; }
    """

    def render_view(self, view: RunView, now: float, width: int) -> None:
        title = Text()
        title.append("mirdeck", style="bold")
        title.append(f" · {view.dataset or '…'} · profile ", style="")
        title.append(view.profile or "…", style="bold cyan")
        clock = time.strftime("%H:%M:%S", time.localtime(now))
        pad = max(1, width - 2 - len(title.plain) - len(clock))
        title.append(" " * pad + clock)

        done, total = view.units()
        fraction = done / total if total else (1.0 if view.finished_at else 0.0)
        narrow = width < 100
        tail = (f" {fraction * 100:3.0f}% · " if narrow
                else f" {fraction * 100:3.0f}%  audio {fmt.hours(view.audio_done)} done · ")
        if view.finished_at:
            word = "stopped" if view.stopped else "finished"
            paused = view.paused_seconds(now)
            # The time worked, and the pauses beside it: a bare "in 3 m" after a 20-minute pause
            # would hide where the wall-clock time went.
            tail_text = Text(f"{word} in {fmt.duration(view.elapsed(now))}"
                             + (f" + {fmt.duration(paused)} paused" if paused >= 0.5 else ""), style="bold")
        elif view.paused:
            tail_text = Text("PAUSED (space resumes)", style="bold yellow")
        else:
            elapsed = "" if narrow else f"elapsed {fmt.duration(view.elapsed(now))} · "
            tail_text = Text(f"{elapsed}ETA {fmt.duration(view.eta_seconds(now))}")
        head = f"tracks {view.tracks_finished:,}/{view.tracks_total:,} " if narrow else \
            f"tracks {view.tracks_finished:,} / {view.tracks_total:,}  "
        bar_width = max(8, min(40, width - 2 - len(head) - len(tail) - len(tail_text.plain)))
        line = Text(head)
        line.append(fmt.bar(fraction, bar_width), style="green")
        line.append(tail)
        line.append_text(tail_text)
        parts: list[Text] = []
        if view.fatal:
            parts.append(Text(f"engine error: {view.fatal}", style="bold red"))
        elif view.stopping == "graceful" and view.running:
            parts.append(Text("stopping: what the workers compute now finishes, nothing new starts (S stops now)",
                              style="bold yellow"))
        elif view.stopping == "immediate" and view.running:
            parts.append(Text("stopping now: killing workers", style="bold red"))
        else:
            if view.left:
                parts.append(Text(f"not processed: {len(view.left):,} track(s), listed in the log",
                                  style="bold yellow"))
            if view.tracks_failed:
                parts.append(Text(f"{view.tracks_failed:,} track(s) with failures · t opens a track", style="yellow"))
        status = Text(" · ").join(parts)
        text = Text("\n").join([title, line, status])
        if not self.unchanged((text.plain, view.fatal, view.paused)):
            self.show(text, 3)
