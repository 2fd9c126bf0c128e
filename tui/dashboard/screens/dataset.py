"""The dataset screen: the report's distributions as terminal charts and a table of every track,
sortable by any column; enter opens the track detail. During a run it follows the ``.INFO``
files as they change (re-reading only the changed ones, in a thread)."""
from __future__ import annotations

import asyncio
from pathlib import Path

from rich.columns import Columns
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from tui.dashboard.widgets.charts import bars_panel, histogram_panel
from tui.export.features import DatasetReader
from tui.report.stats import AESTHETICS, DISTRIBUTIONS, TIMBRAL, DatasetStats, circle_order, collect

CHART_W = 30
RELOAD_S = 2.0  # during a run: at most this often, and only when the run reported something
TEXT_COLUMNS = ("key", "genre", "mood")
COLUMNS = (("track", "track"), ("duration_seconds", "dur s"), ("lufs", "LUFS"), ("lra", "LRA"), ("bpm", "BPM"),
           ("key", "key"), ("genre", "genre"), ("mood", "mood")) + tuple((k, k[:8]) for k in TIMBRAL + AESTHETICS)


def _cell(value) -> Text | str:
    if value is None:
        return Text("–", style="dim")
    if isinstance(value, float):
        return Text(f"{value:.1f}", justify="right")
    return str(value)


def sort_key(column: str):
    """Missing values last, whichever way the column is sorted."""
    def key(row) -> tuple:
        value = row.name if column == "track" else row.values.get(column)
        return (value is None, value if value is not None else 0)
    return key


class DatasetScreen(Screen):
    BINDINGS = [Binding("escape", "app.pop_screen", "back"), Binding("s", "next_sort", "sort by next column"),
                Binding("r", "reverse", "reverse"), Binding("question_mark", "app.help", "help")]
    DEFAULT_CSS = """
    DatasetScreen #dataset-charts { height: auto; max-height: 60%; overflow-y: auto; }
    DatasetScreen #dataset-summary { height: 1; padding: 0 1; }
    DatasetScreen #dataset-tracks { height: 1fr; border: round $primary; }
    """

    def __init__(self, dataset: Path, specs=None):
        super().__init__()
        self.dataset = Path(dataset)
        self.reader = DatasetReader(self.dataset)
        self.specs = specs
        self.stats: DatasetStats | None = None
        self.sort_column = "track"
        self.reverse = False
        self._seen_version = -1
        self._loading = False

    def compose(self) -> ComposeResult:
        yield Static(id="dataset-summary")
        yield Static(id="dataset-charts")
        yield DataTable(id="dataset-tracks", cursor_type="row", zebra_stripes=True)
        yield Footer()

    async def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        table.border_title = "tracks (enter: detail · click a header or s: sort · r: reverse)"
        self._seen_version = self.app.view.version
        await self.reload()
        table.focus()
        self.set_interval(RELOAD_S, self.follow_run)

    async def follow_run(self) -> None:
        if self.app.view.version != self._seen_version and not self._loading:
            self._seen_version = self.app.view.version
            await self.reload()

    async def reload(self) -> None:
        self._loading = True
        try:
            specs = self.specs if self.specs is not None else {
                n: s for n, s in self.app.specs.items() if not n.startswith("_")}
            records, problems = await asyncio.to_thread(self.reader.records)
            self.stats = collect(records, self.dataset, specs)
            self.stats.problems = problems
        except FileNotFoundError as exc:
            self.query_one("#dataset-summary", Static).update(Text(str(exc), style="bold red"))
            return
        finally:
            self._loading = False
        self.draw()

    def draw(self) -> None:
        stats = self.stats
        if stats is None:
            return
        failed = len({t for t, _, _ in stats.failures})
        summary = Text.assemble((self.dataset.resolve().name, "bold"),
                                f"  {stats.tracks} tracks · {stats.with_info} with a .INFO · ",
                                (f"{failed} with a failed module", "red" if failed else ""),
                                f" · {len(stats.broken)} unreadable · {len(stats.clipping)} clipping · "
                                f"{len(stats.silent)} near silence · {len(stats.tempo_undefined)} tempo undefined")
        self.query_one("#dataset-summary", Static).update(summary)
        width = max(20, min(CHART_W, (self.size.width or 120) // 4 - 1))
        charts = [histogram_panel(stats.values[k], title=t, unit=u, width=width) for k, (t, u) in DISTRIBUTIONS.items()]
        keys = sorted(((k, stats.keys.get(k, 0)) for k in circle_order()), key=lambda kv: -kv[1])
        charts.append(bars_panel(keys, title="keys", width=width))
        for head, counter in stats.labels.items():
            charts.append(bars_panel(counter.most_common(6), title=f"top {head}s", width=width))
        charts += [histogram_panel(stats.values[k], title=k, unit="", width=width)
                   for k in TIMBRAL + AESTHETICS if stats.values[k]]
        self.query_one("#dataset-charts", Static).update(Columns(charts, padding=(0, 0)))
        self.fill_table()

    def fill_table(self) -> None:
        table = self.query_one(DataTable)
        stats = self.stats
        if stats is None:
            return
        selected = None
        if table.row_count and table.cursor_row >= 0:
            selected = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
        rows = sorted(stats.rows, key=sort_key(self.sort_column), reverse=self.reverse)
        table.clear()
        for row in rows:
            name = Text(row.name, style="red") if row.failed else row.name
            table.add_row(name, *(_cell(row.values.get(k)) for k, _ in COLUMNS[1:]), key=row.name)
        if selected is not None and selected in table.rows:
            table.move_cursor(row=table.get_row_index(selected))
        label = dict(COLUMNS)[self.sort_column]
        table.border_subtitle = f"sorted by {label} {'↓' if self.reverse else '↑'}"

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        column = str(event.column_key.value)
        self.reverse = not self.reverse if column == self.sort_column else False
        self.sort_column = column
        self.fill_table()

    def action_next_sort(self) -> None:
        keys = [k for k, _ in COLUMNS]
        self.sort_column = keys[(keys.index(self.sort_column) + 1) % len(keys)]
        self.reverse = False
        self.fill_table()

    def action_reverse(self) -> None:
        self.reverse = not self.reverse
        self.fill_table()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if self.stats is None:
            return
        from tui.dashboard.screens.track import TrackScreen

        folders = [r.folder for r in self.stats.rows]
        self.app.push_screen(TrackScreen(folders, str(event.row_key.value)))
