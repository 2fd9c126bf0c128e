"""The headless view: live progress with rich on a terminal, plain lines otherwise, and a
summary table per module at the end."""
from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from tui.run import events as ev
from tui.run.runlog import LEFT_FILE


def fmt_rtf(value: float | None) -> str:
    if not value:
        return "–"
    return f"{value:,.0f}×" if value >= 100 else f"{value:,.1f}×"


SUMMARY_COLUMNS = (("module", "left"), ("done", "right"), ("failed", "right"), ("skipped", "right"),
                   ("n/a", "right"), ("audio s", "right"), ("wall s", "right"), ("RT wall", "right"),
                   ("cpu s", "right"), ("RT core", "right"))


def summary_table(summary: dict[str, dict], title: str = "mirdeck run") -> Table:
    """One row per module. RT wall: audio seconds per wall second; RT core: per CPU second of
    the module's workers (what it costs, however busy the machine was)."""
    from rich import box

    # A header rule and one space between columns: the ten columns fit an 80-column terminal.
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=0, pad_edge=False,
                  show_edge=False)
    for column, justify in SUMMARY_COLUMNS:
        table.add_column(column, justify=justify, no_wrap=True, min_width=len(column))  # type: ignore[arg-type]
    for name, s in summary.items():
        table.add_row(name, str(s["done"]), str(s["failed"]) if s["failed"] else "0", str(s["skipped"]),
                      str(s["not_applicable"]), f"{s['audio_seconds']:,.1f}", f"{s['wall_seconds']:,.2f}",
                      fmt_rtf(s["realtime_factor"]), f"{s.get('cpu_seconds', 0.0):,.2f}",
                      fmt_rtf(s.get("realtime_per_core")))
    return table


def node_table(nodes: list[ev.NodeStatus], gpu_peaks: dict[str, float] | None = None) -> Table:
    """One row per cluster node: what it is and what it did in this run (GPU memory: the most it
    held at any reading, of its total; at the end of a run the latest reading says little)."""
    from rich import box

    table = Table(title="nodes", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False,
                  show_edge=False)
    gpu_peaks = gpu_peaks or {}
    for column in ("node", "address", "state", "CPU", "CPU %", "RAM GB", "GPU", "GPU GiB peak", "workers",
                   "in flight", "tracks"):
        table.add_column(column, justify="left" if column in ("node", "address", "state") else "right", no_wrap=True)
    for n in nodes:
        ram = f"{n.ram_used_gb:,.1f}/{n.ram_total_gb:,.1f}" if n.ram_used_gb is not None and n.ram_total_gb else "–"
        table.add_row(n.node, n.address, ("alive" if n.alive else "lost") + (" (driver)" if n.driver else ""),
                      f"{n.cpus:g}", "–" if n.cpu_percent is None else f"{n.cpu_percent:.0f}", ram, f"{n.gpus:g}",
                      gpu_memory(gpu_peaks.get(n.node), n.gpu_memory_total_gb), str(n.workers),
                      str(n.tracks_in_flight), str(n.tracks_done))
    return table


def gpu_memory(used: float | None, total: float | None) -> str:
    if used is None:
        return "–"
    return f"{used:,.1f}/{total:,.1f}" if total else f"{used:,.1f}"


class HeadlessPrinter:
    """Subscriber that shows a run without the dashboard."""

    def __init__(self, console: Console | None = None, *, live: bool | None = None, verbose: bool = False):
        self.console = console or Console(stderr=False)
        self.live = self.console.is_terminal if live is None else live
        self.verbose = verbose
        self.progress: Progress | None = None
        self.task = None
        self.total = 0
        self.finished = 0
        # A broken file fails every module that reads it with the same message: said once per track.
        self.said: dict[tuple[str, str, str], list[str]] = {}
        self.log_dir = ""
        self.nodes: dict[str, ev.NodeStatus] = {}  # --cluster: each node as last reported
        self.gpu_peaks: dict[str, float] = {}  # --cluster: the most GPU memory each node held, GiB

    def __call__(self, event: ev.Event) -> None:
        handler = getattr(self, f"on_{event.name}", None)
        if handler:
            handler(event)

    def on_run_started(self, e: ev.RunStarted) -> None:
        planned_tracks = max(e.planned.values(), default=0)
        self.total = planned_tracks
        self.log_dir = e.log_dir
        self.console.print(f"[bold]mirdeck[/] · {e.dataset} · profile [cyan]{e.profile}[/] · "
                           f"{e.tracks} tracks · modules: {', '.join(e.modules)}")
        for name in e.modules:
            done = e.skipped.get(name, 0)
            if done:
                self.console.print(f"  {name}: {done} tracks already done, skipped")
            for why, count in e.not_applicable.get(name, {}).items():
                self.console.print(f"  {name}: n/a on {count} track{'s' if count != 1 else ''} ({why})",
                                   highlight=False)
        for problem in e.scan_problems:
            self.console.print(f"  [yellow]scan[/] {problem}", highlight=False)
        self.console.print(f"  run log: {e.log_dir}", highlight=False)
        if self.live and self.total:
            self.progress = Progress(TextColumn("tracks"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[last]}"), TimeElapsedColumn(),
                                     TimeRemainingColumn(), console=self.console, transient=True)
            self.task = self.progress.add_task("tracks", total=self.total, last="")
            self.progress.start()

    def on_track_finished(self, e: ev.TrackFinished) -> None:
        folded = {key: self.said.pop(key) for key in list(self.said) if key[0] == e.track}
        if e.not_run and not e.ok and not e.failed:
            return  # a stop came first: it is in the "not processed" list at the end
        self.finished += 1
        if self.progress is not None:  # without the bar the track's own line below names them all
            for (_, kind, _), modules in folded.items():
                if len(modules) > 1:
                    self.console.print(f"  {e.track}: {kind} also in {', '.join(modules[1:])}",
                                       highlight=False, markup=False)
            self.progress.update(self.task, advance=1, last=e.track[-40:])
        elif self.verbose or e.failed:
            state = "ok" if not e.failed else f"failed: {', '.join(e.failed)}"
            print(f"[{self.finished}/{self.total}] {e.track}: {state}", flush=True)

    def on_module_failed(self, e: ev.ModuleFailed) -> None:
        modules = self.said.setdefault((e.track, e.kind, e.message), [])
        if e.module in modules:
            return  # the same module failing again the same way (its retry)
        modules.append(e.module)
        if len(modules) == 1:
            self.console.print(f"[red]{e.kind}[/] [bold]{e.module}[/] {e.message}", highlight=False)

    def on_store_problem(self, e: ev.StoreProblem) -> None:
        self.console.print(f"[yellow]store[/] {e.message}", highlight=False)

    def on_warning(self, e: ev.Warning) -> None:
        self.console.print(f"[yellow]warning[/] {e.message}", highlight=False)

    def on_node_status(self, e: ev.NodeStatus) -> None:
        """A line when a node joins the run or is lost; the table of nodes at the end."""
        before = self.nodes.get(e.node)
        self.nodes[e.node] = e
        if e.gpu_memory_used_gb is not None:
            self.gpu_peaks[e.node] = max(self.gpu_peaks.get(e.node, 0.0), e.gpu_memory_used_gb)
        if before is None:
            self.console.print(f"  node {e.node} ({e.address}{', driver' if e.driver else ''}): {e.cpus:g} CPU"
                               + (f", {e.gpus:g} GPU" if e.gpus else "")
                               + (f", RAM {e.ram_total_gb:,.1f} GB" if e.ram_total_gb else "")
                               + ("" if e.alive else ", lost"), highlight=False)
        elif before.alive and not e.alive:
            self.console.print(f"[yellow]node {e.node} ({e.address}) lost[/]: its tracks in flight go to "
                               "the other nodes", highlight=False)

    def on_run_finished(self, e: ev.RunFinished) -> None:
        if self.progress is not None:
            self.progress.stop()
        title = f"mirdeck run {'stopped' if e.stopped else 'finished'} in {e.wall_seconds:,.1f} s"
        self.console.print(summary_table(e.summary, title))
        if self.nodes:
            self.console.print(node_table(list(self.nodes.values()), self.gpu_peaks))
        if e.left:
            self.print_left(e.left)
        sys.stdout.flush()

    def print_left(self, left: dict[str, list[str]]) -> None:
        print_left(self.console, left, self.log_dir)


LEFT_SHOWN = 20


def print_left(console: Console, left: dict[str, list[str]], log_dir: str = "") -> None:
    """What a stopped run did not process: the count, the first tracks, where the full list is."""
    runs = sum(len(m) for m in left.values())
    console.print(f"[yellow]not processed[/]: {len(left)} track(s), {runs} module run(s) "
                  "(run again to do them):", highlight=False)
    for track, modules in list(left.items())[:LEFT_SHOWN]:
        console.print(f"  {track}: {', '.join(modules)}", highlight=False, markup=False)
    if len(left) > LEFT_SHOWN:
        console.print(f"  … and {len(left) - LEFT_SHOWN} more", highlight=False)
    if log_dir:
        console.print(f"  full list: {Path(log_dir) / LEFT_FILE}", highlight=False)
