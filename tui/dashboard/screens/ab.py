"""The A/B view: the two Music Flamingo back ends' texts side by side per prompt, per track, with
their timings, memory, similarity and fact agreement, from an A/B report (``mirdeck ab`` or the
set-up screen's "A/B: both"). While an A/B started here runs, its progress heads the screen and
the report appears when it is written."""
from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from tui.ab.progress import ABProgress
from tui.ab.reports import SIDE_LABEL, ABReport, ReportError, find_reports, load_report

SIDES = ("gguf", "hf")


def _num(value, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}{unit}" if abs(value) < 1000 else f"{value:,.0f}{unit}"
    return f"{value:,}{unit}" if isinstance(value, int) else f"{value}{unit}"


def _mem(value) -> str:
    return "not measured" if value is None else f"{value / 2**30:.2f} GiB"


def mean_rouge(track: dict) -> float | None:
    values = [p.get("rouge_l_f1") for p in track.get("prompts", {}).values() if p.get("rouge_l_f1") is not None]
    return sum(values) / len(values) if values else None


def track_label(track: dict) -> Text:
    label = Text(track.get("track", "?"))
    failed = [SIDE_LABEL[s].split(" ")[0] for s in SIDES if not track.get("backends", {}).get(s, {}).get("ok")]
    if failed:
        label.append(f"  {'/'.join(failed)} failed", style="bold red")
    else:
        label.append(f"  R-L {_num(mean_rouge(track), digits=2)}", style="dim")
    if not track.get("fair", True):
        label.append("  UNFAIR", style="bold red")
    return label


def shown_path(folder: Path) -> str:
    """Relative to the current folder where it lies inside it (./mirdeck-ab/…), else absolute."""
    try:
        return str(folder.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(folder)


def summary_renderable(report: ABReport) -> Group:
    s = report.summary
    first = report.tracks[0]["backends"] if report.tracks else {}
    head = Text.assemble(("A/B report ", "bold"), (shown_path(report.folder), "cyan"), "\n",
                         f"{s.get('tracks', 0)} tracks, {s.get('compared_tracks', 0)} answered by both · ")
    if s.get("fair", True):
        head.append("same prompts, limits and sampling on both sides", style="green")
    else:
        head.append("UNFAIR: prompts or sampling differ (see a track); no winner can be applied", style="bold red")
    table = Table(box=None, padding=(0, 2), show_edge=False, pad_edge=False)
    table.add_column("", style="dim", no_wrap=True)
    for side in SIDES:
        table.add_column(SIDE_LABEL[side], style="bold" if side == "gguf" else "bold", no_wrap=True)
    backends = s.get("backends", {})

    def row(label: str, value) -> None:
        table.add_row(label, *(value(backends.get(side, {}), first.get(side, {})) for side in SIDES))

    row("model", lambda b, f: _num(f.get("model")))
    row("tracks ok / failed", lambda b, f: f"{b.get('ok_tracks', 0)} / {b.get('failed_tracks', 0)}")
    row("seconds per track", lambda b, f: _num(b.get("seconds_per_track"), " s"))
    row("tokens/s (mean)", lambda b, f: _num(b.get("tokens_per_s")))
    row("generated tokens", lambda b, f: _num(b.get("generated_tokens")))
    row("peak RSS", lambda b, f: _mem(b.get("peak_rss_bytes")))
    row("peak GPU memory", lambda b, f: _mem(b.get("peak_gpu_bytes")))
    def sampling(settings: dict) -> str:
        shown = [f"{k} {'→'.join(map(str, v)) if isinstance(v, list) else v}"
                 for k, v in (settings or {}).items() if v is not None]
        return ", ".join(shown) or "n/a"

    parts = [head, table]
    settings = {side: sampling(first.get(side, {}).get("sampling")) for side in SIDES}
    if len(set(settings.values())) == 1:
        parts.append(Text(f"sampling, both: {settings['gguf']}", style="dim"))
    else:
        parts += [Text(f"sampling, {SIDE_LABEL[side]}: {value}", style="yellow") for side, value in settings.items()]
    for problem in report.problems:
        parts.append(Text(f"unreadable track report: {problem}", style="yellow"))
    return Group(*parts)


def track_renderable(track: dict) -> Group:
    parts: list = [Text(track.get("track", "?"), style="bold"), Text(track.get("folder", ""), style="dim")]
    if not track.get("fair", True):
        parts.append(Text("UNFAIR: " + "; ".join(track.get("unfair_because", [])), style="bold red"))
    for side in SIDES:
        backend = track.get("backends", {}).get(side, {})
        if backend and not backend.get("ok"):
            parts.append(Text(f"{SIDE_LABEL[side]} failed: {backend.get('error') or 'no answer'}", style="bold red"))
    for prompt, entry in track.get("prompts", {}).items():
        facts = entry.get("facts", {})
        tempo, key, genre = facts.get("tempo", {}), facts.get("key", {}), facts.get("genre", {})
        tempo_detail = (f" ({_num(tempo.get('a'))} / {_num(tempo.get('b'))} BPM)"
                        if tempo.get("agreement") not in (None, "n/a") else "")
        key_detail = f" ({key.get('a')} / {key.get('b')})" if key.get("agreement") not in (None, "n/a") else ""
        title = Text.assemble(("\n" + prompt, "bold magenta"),
                              f"  ROUGE-L F1 {_num(entry.get('rouge_l_f1'), digits=2)}",
                              f" · tempo {tempo.get('agreement', 'n/a')}" + tempo_detail,
                              f" · key {key.get('agreement', 'n/a')}" + key_detail,
                              f" · genre words shared: {', '.join(genre.get('shared', [])) or 'none'}")
        table = Table(expand=True, box=box.SIMPLE_HEAD, padding=(0, 1))
        for side in SIDES:
            table.add_column(SIDE_LABEL[side], ratio=1, overflow="fold")
        texts, metrics = [], []
        for side in SIDES:
            e = entry.get(side, {})
            text = e.get("text")
            texts.append(Text(text) if text else Text("(no answer)", style="dim italic"))
            first = f" · first token {_num(e.get('first_token_s'), ' s')}" if e.get("first_token_s") else ""
            metrics.append(Text(f"{_num(e.get('tokens'))} tokens · {_num(e.get('seconds'), ' s')} · "
                                f"{_num(e.get('tokens_per_s'))} tok/s" + first
                                + (f" · {e['finish_reason']}" if e.get("finish_reason") else ""), style="dim"))
        table.add_row(*texts)
        table.add_row(*metrics)
        parts += [title, table]
    return Group(*parts)


class WinnerScreen(ModalScreen):
    """Which back end's answers go into the tracks' .INFO files: asked, never assumed (it replaces
    the Flamingo keys there). Dismissed with the side chosen, or None."""

    BINDINGS = [Binding("g", "choose('gguf')", "GGUF"), Binding("h", "choose('hf')", "transformers"),
                Binding("escape,q", "choose(None)", "cancel")]
    DEFAULT_CSS = """
    WinnerScreen { align: center middle; }
    WinnerScreen > Static { width: 80; max-width: 100%; height: auto; border: thick $primary;
                            background: $surface; padding: 1 2; }
    """

    def __init__(self, report: ABReport):
        super().__init__()
        self.report = report

    def compose(self) -> ComposeResult:
        ok = {side: sum(1 for t in self.report.tracks if t.get("backends", {}).get(side, {}).get("ok"))
              for side in SIDES}
        text = Text.assemble(("Write a winner's answers into the dataset\n\n", "bold"),
                             f"The Music Flamingo keys of the {len(self.report.tracks)} tracks of this report are "
                             "replaced in their .INFO files by the chosen back end's answers (where it answered; "
                             "its provenance points at this report).\n\n")
        for key, side in (("g", "gguf"), ("h", "hf")):
            text.append(f"  {key}", style="bold cyan")
            text.append(f"  {SIDE_LABEL[side]}: {ok[side]} of {len(self.report.tracks)} tracks answered\n")
        text.append("  escape", style="bold cyan")
        text.append("  cancel: nothing is written")
        yield Static(text)

    def action_choose(self, side: str | None) -> None:
        self.dismiss(side)


class ABScreen(Screen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "back"),
        Binding("left_square_bracket", "older", "older report"),
        Binding("right_square_bracket", "newer", "newer report"),
        Binding("r", "reload", "reload"),
        Binding("w", "winner", "choose winner"),
        Binding("question_mark", "app.help", "help"),
    ]

    def __init__(self, report: Path | None = None, progress: ABProgress | None = None):
        super().__init__()
        self.wanted = Path(report).resolve() if report else None
        self.progress = progress
        self.reports: list[Path] = []
        self.index = 0
        self.report: ABReport | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="ab-progress")
        yield Static("", id="ab-head")
        with Horizontal(id="ab-main"):
            yield OptionList(id="ab-tracks")
            with VerticalScroll(id="ab-detail-box"):
                yield Static("", id="ab-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#ab-tracks").border_title = "tracks"
        self.query_one("#ab-detail-box").border_title = "texts side by side"
        self.query_one("#ab-progress").display = self.progress is not None
        self.set_class(self.app.size.width < 100, "narrow")
        self.action_reload()
        if self.progress is not None:
            self.set_interval(0.5, self.poll_progress)
            self.poll_progress()

    def on_resize(self, event) -> None:
        self.set_class(event.size.width < 100, "narrow")

    def poll_progress(self) -> None:
        progress = self.progress
        if progress is None:
            return
        style = "bold red" if progress.error else ("bold green" if not progress.running else "bold yellow")
        self.query_one("#ab-progress", Static).update(Text(progress.line(), style=style))
        if not progress.running and self.wanted != progress.out_dir.resolve():
            self.wanted = progress.out_dir.resolve()  # the report it just wrote
            self.action_reload()

    def action_reload(self) -> None:
        self.reports = find_reports(self.app.dataset)
        if self.wanted in self.reports:
            self.index = self.reports.index(self.wanted)
        self.index = min(self.index, max(0, len(self.reports) - 1))
        self.show_report()

    def action_older(self) -> None:
        if self.index + 1 < len(self.reports):
            self.index += 1
            self.wanted = self.reports[self.index]
            self.show_report()

    def action_newer(self) -> None:
        if self.index > 0:
            self.index -= 1
            self.wanted = self.reports[self.index]
            self.show_report()

    def action_winner(self) -> None:
        report = self.report
        if report is None:
            self.app.notify("no A/B report shown", severity="warning")
            return
        if self.progress is not None and self.progress.running:
            self.app.notify("the A/B is still running: choose a winner when its report is written", severity="warning")
            return
        if not report.summary.get("fair", True) or not all(t.get("fair", True) for t in report.tracks):
            self.app.notify("this comparison was not fair (prompts or sampling differ): no winner can be applied",
                            severity="error", timeout=8)
            return

        def chosen(side: str | None) -> None:
            if side is None:
                return
            from tui.ab.run import WinnerRefused, apply_winner_from_report

            try:
                written, left = apply_winner_from_report(report.folder, side,
                                                         f"mirdeck dashboard A/B view, winner {side}")
            except WinnerRefused as exc:
                self.app.notify(str(exc), severity="error", timeout=10)
                return
            message = f"wrote the {SIDE_LABEL[side]} answers into {len(written)} tracks' .INFO files"
            if left:
                message += f"; left out {len(left)}: " + "; ".join(left[:3])
            self.app.notify(message, severity="warning" if left else "information", timeout=10)

        self.app.push_screen(WinnerScreen(report), chosen)

    def show_report(self) -> None:
        head = self.query_one("#ab-head", Static)
        tracks = self.query_one("#ab-tracks", OptionList)
        detail = self.query_one("#ab-detail", Static)
        tracks.clear_options()
        self.report = None
        if not self.reports:
            running = self.progress is not None and self.progress.running
            head.update(Text.assemble(
                ("The A/B is running; its report appears here when it is written. " if running
                 else "No A/B report yet. ", "bold"),
                "An A/B runs both Music Flamingo back ends (GGUF through llama.cpp and full transformers) on the "
                "same tracks with the same prompts, token limits and sampling. Start one from the set-up screen "
                "(Flamingo back end: A/B) or with `mirdeck ab TRACK…`; reports are looked for in the dataset's "
                ".mirdeck/ab/ and in ./mirdeck-ab/."))
            detail.update("")
            return
        try:
            self.report = load_report(self.reports[self.index])
        except ReportError as exc:
            head.update(Text(str(exc), style="bold red"))
            detail.update("")
            return
        head.update(summary_renderable(self.report))
        self.query_one("#ab-main").border_title = None
        tracks.border_title = f"tracks · report {self.index + 1} of {len(self.reports)}"
        tracks.add_options([Option(track_label(t), id=str(i)) for i, t in enumerate(self.report.tracks)])
        if self.report.tracks:
            tracks.highlighted = 0
            self.show_track(0)
        else:
            detail.update(Text("this report holds no tracks", style="yellow"))

    def show_track(self, index: int) -> None:
        if self.report is None or not 0 <= index < len(self.report.tracks):
            return
        self.query_one("#ab-detail", Static).update(track_renderable(self.report.tracks[index]))
        self.query_one("#ab-detail-box", VerticalScroll).scroll_home(animate=False)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_list.id == "ab-tracks" and event.option.id is not None:
            self.show_track(int(event.option.id))
