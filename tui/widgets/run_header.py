"""Title line and overall progress: how far the run is and when it ends."""
from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from tui.runview import RunView
from tui.widgets import format as fmt


class RunHeader(Static):
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
        line = Text()
        line.append(f"tracks {view.tracks_finished:,} / {view.tracks_total:,}  ")
        line.append(fmt.bar(fraction, max(10, min(40, width - 80))), style="green")
        line.append(f" {fraction * 100:3.0f}%  audio {fmt.duration(view.audio_done)} done · ")
        if view.finished_at:
            word = "stopped" if view.stopped else "finished"
            line.append(f"{word} in {fmt.duration(view.elapsed(now))}", style="bold")
        elif view.paused:
            line.append("PAUSED (space resumes)", style="bold yellow")
        else:
            line.append(f"elapsed {fmt.duration(view.elapsed(now))} · ETA {fmt.duration(view.eta_seconds(now))}")
        status = Text()
        if view.fatal:
            status.append(f"engine error: {view.fatal}", style="bold red")
        elif view.stopping == "graceful" and view.running:
            status.append("stopping: finishing the tracks in flight (S stops now)", style="bold yellow")
        elif view.stopping == "immediate" and view.running:
            status.append("stopping now: killing workers", style="bold red")
        elif view.tracks_failed:
            status.append(f"{view.tracks_failed} track(s) with failures · t opens a track", style="yellow")
        self.update(Text("\n").join([title, line, status]))
