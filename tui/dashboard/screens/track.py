"""Track detail: one track's .INFO features, provenance per module, errors with the log lines
around them, and long texts (Flamingo captions). Pick another track on the left."""
from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from tui.dashboard.widgets.log_pane import entry_text
from tui.run.store import PROVENANCE_KEY, read_info_lenient

TEXT_MIN = 60  # a string feature at least this long is shown as text, not in the table


def track_report(folder: Path, view=None) -> Group:
    """Everything known about one track, as Rich renderables (pure: testable without a screen)."""
    info_file = folder / f"{folder.name}.INFO"
    parts: list = [Text(folder.name, style="bold"), Text(f"file: {info_file.name}", style="dim")]
    if not info_file.exists():
        parts.append(Text("\nno .INFO yet: no module has finished on this track", style="yellow"))
        info, problem = {}, ""
    else:
        info, problem = read_info_lenient(info_file)
    if problem:
        parts.append(Text(f"\n{problem}", style="bold red"))
    features = {k: v for k, v in info.items() if not k.startswith("_")}
    texts = {k: v for k, v in features.items() if isinstance(v, str) and len(v) >= TEXT_MIN}
    if features:
        table = Table(title="features", title_justify="left", expand=True)
        table.add_column("key", no_wrap=True)
        table.add_column("value", overflow="fold")
        for key, value in features.items():
            if key in texts:
                continue
            shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
            table.add_row(key, shown if len(shown) < 200 else shown[:199] + "…")
        parts.append(table)
    provenance = info.get(PROVENANCE_KEY, {}) if isinstance(info.get(PROVENANCE_KEY), dict) else {}
    if provenance:
        table = Table(title="provenance", title_justify="left", expand=True)
        for column in ("module", "status", "version", "profile", "elapsed s", "RTF", "model / error"):
            table.add_column(column, overflow="fold")
        for module, prov in provenance.items():
            status = prov.get("status", "?")
            error = prov.get("error") or {}
            model = prov.get("model") or prov.get("model_id") or ""
            detail = f"{error.get('kind')}: {error.get('message')}" if error else str(model)
            table.add_row(module, Text(status, style="green" if status == "ok" else "bold red"),
                          str(prov.get("version", "")), str(prov.get("profile", "")),
                          str(prov.get("elapsed_s", "")), str(prov.get("realtime_factor", "")), detail)
        parts.append(table)
    for key, value in texts.items():
        parts.append(Text(f"\n{key}", style="bold"))
        parts.append(Text(value))
    if view is not None:
        track_id = next((t for t in view.errors if Path(t).name == folder.name), None)
        for entry in view.errors.get(track_id, []) if track_id else []:
            parts.append(Text(f"\nerror in {entry.module} at {time.strftime('%H:%M:%S', time.localtime(entry.time))}"
                              " — log lines around it:", style="bold red"))
            for line in view.log_around(entry):
                parts.append(entry_text(line))
    return Group(*parts)


class TrackScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "back"), Binding("question_mark", "app.help", "help")]
    DEFAULT_CSS = """
    TrackScreen #track-list { width: 36; height: 1fr; border: round $primary; }
    TrackScreen #track-body { height: 1fr; border: round $primary; padding: 0 1; }
    TrackScreen.narrow #track-list { width: 22; }
    """

    def __init__(self, folders: list[Path], selected: str = ""):
        super().__init__()
        self.folders = folders
        self.selected = selected

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield OptionList(*(Option(f.name, id=str(i)) for i, f in enumerate(self.folders)), id="track-list")
            with VerticalScroll(id="track-body"):
                yield Static(id="track-report")
        yield Footer()

    def on_mount(self) -> None:
        self.set_class(self.app.size.width < 100, "narrow")
        self.query_one("#track-list").border_title = "tracks"
        index = next((i for i, f in enumerate(self.folders) if f.name == Path(self.selected).name), 0)
        options = self.query_one(OptionList)
        if self.folders:
            options.highlighted = index
            self.show(index)
        else:
            self.query_one("#track-report", Static).update("no tracks in this dataset")
        options.focus()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.show(int(event.option.id))

    def show(self, index: int) -> None:
        folder = self.folders[index]
        self.query_one("#track-body").border_title = folder.name
        self.query_one("#track-report", Static).update(track_report(folder, self.app.view))
