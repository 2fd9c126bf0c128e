"""Small read-only panels: tracks in flight, GPU, CPU/RAM, the latest finished track."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from tui.runview import RunView
from tui.widgets import format as fmt


class InFlightPanel(Static):
    DEFAULT_CSS = "InFlightPanel { height: auto; min-height: 3; border: round $primary; padding: 0 1; }"

    def on_mount(self) -> None:
        self.border_title = "in flight"

    def render_view(self, view: RunView, now: float, limit: int = 6) -> None:
        if not view.in_flight:
            self.update(Text("nothing in flight" if view.finished_at or not view.started_at else "starting…",
                             style="dim"))
            return
        table = Table.grid(padding=(0, 1), expand=True)
        table.add_column(ratio=3, no_wrap=True)
        table.add_column(ratio=2, no_wrap=True)
        table.add_column(width=6, justify="right")
        rows = 0
        for track in list(view.in_flight.values())[:limit]:
            if not track.progress:
                word = "writing .INFO" if len(track.finished) >= len(track.modules) else (
                    "waiting for a worker" if track.finished else "decoding / queued")
                table.add_row(fmt.shorten(track.name, 40), Text(word, style="dim"),
                              fmt.duration(now - track.started))
                rows += 1
            for module, (fraction, stage) in track.progress.items():
                label = f"{module} {stage}".strip()
                table.add_row(fmt.shorten(track.name, 40), fmt.shorten(label, 24) + " " + fmt.bar(fraction, 5),
                              fmt.duration(now - track.started))
                rows += 1
        more = len(view.in_flight) - limit
        if more > 0:
            table.add_row(Text(f"… and {more} more tracks", style="dim"), "", "")
        self.update(table)


class GpuPanel(Static):
    DEFAULT_CSS = "GpuPanel { height: auto; border: round $primary; padding: 0 1; }"

    def on_mount(self) -> None:
        self.border_title = "GPU"

    def render_view(self, view: RunView, width: int = 30) -> None:
        snap = view.gpu
        if snap is None:
            self.update(Text("reading…", style="dim"))
            return
        if not snap.devices:
            self.border_title = "GPU · none"
            self.update(Text(f"No GPU in use: {snap.note or 'none found'}.\nEverything runs on the CPU.",
                             style="yellow"))
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
        self.update(Text("\n").join(lines))


class HostPanel(Static):
    DEFAULT_CSS = "HostPanel { height: auto; border: round $primary; padding: 0 1; }"

    def render_view(self, view: RunView, width: int = 30) -> None:
        host = view.host
        cpu = fmt.DASH if host.cpu_percent is None else f"{host.cpu_percent:.0f}%"
        ram = fmt.DASH if host.ram_used is None else f"{fmt.gib(host.ram_used)}/{fmt.gib(host.ram_total, 0)} GiB"
        self.border_title = f"CPU {cpu} · RAM {ram}"
        lines = [Text(fmt.sparkline(view.cpu_history, max(8, width - 4)), style="blue")]
        rss = sorted(host.worker_rss.items(), key=lambda kv: -kv[1])[:2]
        for pid, value in rss:
            module = view.worker_module.get(pid, "?")
            lines.append(Text(f"{fmt.shorten(module, 13):<13} {pid:>7} {fmt.short_size(value):>6}", style="dim"))
        self.update(Text("\n").join(lines))


class LatestPanel(Static):
    DEFAULT_CSS = "LatestPanel { height: auto; border: round $primary; padding: 0 1; }"

    def on_mount(self) -> None:
        self.border_title = "latest track"

    def render_view(self, view: RunView, features: dict, width: int = 30) -> None:
        if not view.latest_track:
            self.update(Text("no track finished yet", style="dim"))
            return
        lines = [Text(fmt.shorten(view.latest_track, width - 2), style="bold")]
        ok = [m for m, outcome in view.latest_outcome.items() if outcome == "ok"]
        if ok:
            lines.append(Text(f"ok: {', '.join(ok)}", style="green"))
        for module, outcome in view.latest_outcome.items():
            if outcome != "ok":
                lines.append(Text(f"FAILED {module}: {outcome}", style="bold red"))
        for key, value in list(features.items())[:3]:
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(Text(fmt.shorten(f"{key} = {text}", width - 2), style="dim"))
        self.update(Text("\n").join(lines))
