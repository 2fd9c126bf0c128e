"""Small read-only panels: tracks in flight, GPU, CPU/RAM, the latest finished track."""
from __future__ import annotations

from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from tui.dashboard.runview import RunView
from tui.dashboard.widgets import format as fmt


class Panel(Widget):
    """Shows styled text lines. A new content repaints only this widget; the screen's layout is
    recomputed only when the number of lines changes (a relayout of the whole screen at every
    tick was most of the dashboard's CPU use).

    Lines are turned into strips here, once per content and width, instead of through Textual's
    general renderable pipeline, which cost several times more per panel and frame (the module
    table most; docs/performance.md, benchmarks/dashboard.py)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._content = Text("")
        self._lines = -1
        self._strips: tuple[int, list[Strip]] | None = None

    grow_only = False
    """Keep the tallest height seen (padding with blank lines): a panel whose line count
    changes at every tick would otherwise relayout the screen at every tick."""

    def unchanged(self, key) -> bool:
        """True if ``key`` (what the content is made from) is the same as last time: then the
        panel keeps what it shows and nothing is repainted."""
        if key == getattr(self, "_key", None):
            return True
        self._key = key
        return False

    def show(self, content: Text, lines: int) -> None:
        if self.grow_only and lines < self._lines:
            content = content.copy()
            content.append("\n" * (self._lines - lines))
            lines = self._lines
        self._content = content
        self._strips = None
        self.refresh(layout=lines != self._lines)
        self._lines = lines

    @property
    def content(self) -> Text:
        return self._content

    def render(self) -> Text:  # what Textual measures and what tests read
        return self._content

    def get_content_height(self, container, viewport, width: int) -> int:
        return max(1, len(self._content.plain.split("\n")))

    def _line_strips(self, width: int) -> list[Strip]:
        if self._strips is None or self._strips[0] != width:
            base = self.rich_style
            strips = []
            for line in self._content.split("\n", allow_blank=True):
                if line.cell_len > width:
                    line.truncate(width, overflow="ellipsis")
                segments = list(line.render(self.app.console))
                strips.append(Strip(segments, line.cell_len).apply_style(base).extend_cell_length(width, base))
            self._strips = (width, strips)
        return self._strips[1]

    def render_line(self, y: int) -> Strip:
        width = self.content_region.width
        strips = self._line_strips(width)
        return strips[y] if y < len(strips) else Strip.blank(width, self.rich_style)


def joined(lines: list[Text]) -> Text:
    for line in lines:
        line.no_wrap, line.overflow = True, "ellipsis"
    return Text("\n", no_wrap=True, overflow="ellipsis").join(lines)


class InFlightPanel(Panel):
    grow_only = True
    DEFAULT_CSS = "InFlightPanel { height: auto; min-height: 3; border: round $primary; padding: 0 1; }"

    def on_mount(self) -> None:
        self.border_title = "in flight"

    def render_view(self, view: RunView, now: float, width: int = 80, limit: int = 6) -> None:
        shown = list(view.in_flight.values())[:limit]
        key = (len(view.in_flight), view.finished_at, int(now), width,
               tuple((t.name, tuple(t.progress.items()), len(t.finished)) for t in shown))
        if self.unchanged(key):
            return
        if not view.in_flight:
            if view.finished_at or not view.started_at:
                word = "nothing in flight"
            else:
                word = "no track in flight: workers closing" if view.tracks_started else "starting…"
            self.show(Text(word, style="dim"), 1)
            return
        # Plain fixed-width lines: a Rich Table re-measured at every tick costs several times more.
        width = max(42, width)
        # The time column holds the longest duration shown under an hour, "59 m 59 s".
        clock = 9
        name_width = max(16, width - 31 - clock)
        lines: list[Text] = []

        def row(name: str, what: Text, seconds: float) -> None:
            line = Text(fmt.shorten_middle(name, name_width).ljust(name_width + 1))
            line.append_text(what)
            line.pad_right(max(0, width - clock - line.cell_len))
            line.append(fmt.duration(seconds).rjust(clock))
            lines.append(line)

        for track in shown:
            if not track.progress:
                word = "writing .INFO" if len(track.finished) >= len(track.modules) else (
                    "waiting for a worker" if track.finished - {"decode"} else "queued")
                row(track.name, Text(word, style="dim"), now - track.started)
            for module, (fraction, stage) in track.progress.items():
                what = Text(fmt.shorten(f"{module} {stage}".strip(), 24).ljust(25))
                what.append(fmt.bar(fraction, 5), style="green")
                row(track.name, what, now - track.started)
        more = len(view.in_flight) - limit
        if more > 0:
            lines.append(Text(f"… and {more} more tracks", style="dim"))
        table, rows = joined(lines), len(lines)
        self.show(table, rows)


class GpuPanel(Panel):
    DEFAULT_CSS = "GpuPanel { height: auto; border: round $primary; padding: 0 1; }"

    def on_mount(self) -> None:
        self.border_title = "GPU"

    def render_view(self, view: RunView, width: int = 30) -> None:
        snap = view.gpu
        if self.unchanged((id(snap), width, len(view.worker_module))):
            return
        if snap is None:
            self.show(Text("reading…", style="dim"), 1)
            return
        if not snap.devices:
            self.border_title = "GPU · none"
            text = Text(f"No GPU in use: {snap.note or 'none found'}.\nEverything runs on the CPU.", style="yellow")
            lines = list(text.wrap(self.app.console, max(10, width - 2)))  # this note may wrap
            self.show(joined(lines), len(lines))
            return
        lines: list[Text] = []
        spark_width = max(8, width - 4)
        for device in snap.devices:
            head = Text(f"{device.index} · {fmt.shorten(device.name, width - 6)}", style="bold")
            lines.append(head)
            full = (device.vram_used or 0) / device.vram_total if device.vram_total else 0.0
            style = "bold red" if full > 0.95 else "yellow" if full > 0.85 else ""
            lines.append(Text(f"VRAM {fmt.gib(device.vram_used)} / {fmt.gib(device.vram_total)} GiB"
                              + (" FULL" if full > 0.95 else ""), style=style))
            lines.append(Text(fmt.sparkline(view.gpu_history.get(device.index, ()), spark_width), style="magenta"))
            if device.gtt_used is not None:
                lines.append(Text(f"GTT  {fmt.gib(device.gtt_used)} / {fmt.gib(device.gtt_total)} GiB"))
            busy = fmt.DASH if device.busy_percent is None else f"{device.busy_percent:.0f} %"
            temp = fmt.DASH if device.temperature_c is None else f"{device.temperature_c:.0f} °C"
            lines.append(Text(f"busy {busy}   {temp}"))
        workers = [(view.worker_module.get(pid, "?"), pid, mem) for pid, mem in snap.processes.items()]
        if workers:
            lines.append(Text("─ GPU memory per worker ─", style="dim"))
            for module, pid, mem in sorted(workers, key=lambda w: -w[2].vram)[:4]:
                gtt = f" +{fmt.short_size(mem.gtt)} GTT" if mem.gtt else ""
                lines.append(Text(f"{fmt.shorten(module, 13):<13} {pid:>7} {fmt.short_size(mem.vram):>6}{gtt}"))
            if len(workers) > 4:
                lines.append(Text(f"… {len(workers) - 4} more workers", style="dim"))
        self.border_title = f"GPU · {snap.source}"
        self.show(joined(lines), len(lines))


NODES_SHOWN = 6


def node_lines(node) -> list[Text]:
    """A cluster node in the host panel: its CPU use, workers and tracks; its GPU memory below."""
    cpu_use = fmt.DASH if node.cpu_percent is None else f"{node.cpu_percent:.0f}%"
    state = cpu_use if node.alive else "lost"
    style = "" if node.alive else "yellow"
    lines = [Text(f"node {node.node} {state:>5} {node.workers:>2}w {node.tracks_in_flight:>2} now "
                  f"{node.tracks_done:>5} done", style=style)]
    if node.alive and node.gpu_memory_used_gb is not None:
        total = f"/{node.gpu_memory_total_gb:.1f}" if node.gpu_memory_total_gb else ""
        lines.append(Text(f"  {node.gpus:g} GPU {node.gpu_memory_used_gb:.1f}{total} GiB", style="dim"))
    return lines


class HostPanel(Panel):
    DEFAULT_CSS = "HostPanel { height: auto; border: round $primary; padding: 0 1; }"

    def render_view(self, view: RunView, width: int = 30) -> None:
        host = view.host
        if self.unchanged((id(host), width, view.nodes_version)):
            return
        cpu = fmt.DASH if host.cpu_percent is None else f"{host.cpu_percent:.0f}%"
        ram = fmt.DASH if host.ram_used is None else f"{fmt.gib(host.ram_used)}/{fmt.gib(host.ram_total, 0)} GiB"
        self.border_title = f"CPU {cpu} · RAM {ram}"
        lines = [Text(fmt.sparkline(view.cpu_history, max(8, width - 4)), style="blue")]
        rss = sorted(host.worker_rss.items(), key=lambda kv: -kv[1])[:2]
        for pid, value in rss:
            module = view.worker_module.get(pid, "?")
            lines.append(Text(f"{fmt.shorten(module, 13):<13} {pid:>7} {fmt.short_size(value):>6}", style="dim"))
        for node in list(view.nodes.values())[:NODES_SHOWN]:  # --cluster: a line per node (two with a GPU)
            lines.extend(node_lines(node))
        if len(view.nodes) > NODES_SHOWN:
            lines.append(Text(f"… {len(view.nodes) - NODES_SHOWN} more nodes", style="dim"))
        self.show(joined(lines), len(lines))


class LatestPanel(Panel):
    DEFAULT_CSS = "LatestPanel { height: auto; border: round $primary; padding: 0 1; }"

    def on_mount(self) -> None:
        self.border_title = "latest track"

    EVERY_S = 1.0
    """At most one new track per second: on a fast run a track finishes every few milliseconds and
    a panel that changed at every frame cost a tenth of the dashboard's CPU for a name nobody can
    read at that speed."""

    def render_view(self, view: RunView, features: dict, width: int = 30, now: float = 0.0) -> None:
        shown = getattr(self, "_key", None)
        if (shown and shown[0] and view.latest_track != shown[0] and not view.finished_at
                and now - getattr(self, "_shown_at", 0.0) < self.EVERY_S):
            return
        if self.unchanged((view.latest_track, id(features), width, len(view.latest_outcome))):
            return
        self._shown_at = now
        if not view.latest_track:
            self.show(Text("no track finished yet", style="dim"), 1)
            return
        lines = [Text(fmt.shorten_middle(view.latest_track, width - 2), style="bold")]
        ok = [m for m, outcome in view.latest_outcome.items() if outcome == "ok"]
        if ok:
            lines.append(Text(f"ok: {', '.join(ok)}", style="green"))
        for module, outcome in view.latest_outcome.items():
            if outcome != "ok":
                lines.append(Text(f"FAILED {module}: {outcome}", style="bold red"))
        for key, value in list(features.items())[:3]:
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(Text(fmt.shorten(f"{key} = {text}", width - 2), style="dim"))
        self.show(joined(lines), len(lines))
