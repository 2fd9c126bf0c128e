"""The set-up screen: dataset, profile (with its effective environment and what changed),
module checklist with readiness and overwrite switches, Flamingo back end, Start."""
from __future__ import annotations

import asyncio
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, DataTable, Footer, Input, OptionList, RadioButton, RadioSet, Static
from textual.widgets.option_list import Option

from tui.dashboard.setup_model import (
    DatasetSummary,
    env_diff,
    env_lines,
    flamingo_backends,
    readiness,
    summarise_dataset,
)
from tui.run.profiles import ProfileError, list_names, load

CHECK = {True: Text("[x]"), False: Text("[ ]")}
FLAMINGO_CHOICES = {"gguf": "GGUF (llama.cpp)", "hf": "transformers",
                    "ab": "A/B: both, on N tracks after the run"}
FLAMINGO_MODULES = {"gguf": "flamingo_gguf", "hf": "flamingo_hf"}


def flamingo_choices(specs) -> list[str]:
    """The back-end choices this build offers: each installed back end, and A/B when both are."""
    installed = [side for side, module in FLAMINGO_MODULES.items() if module in specs]
    return installed + (["ab"] if len(installed) == 2 else [])
STATE_STYLE = {"ready": "green", "model missing": "bold red", "binary missing": "bold red"}


class SetupScreen(Screen):
    BINDINGS = [
        Binding("ctrl+s", "start", "start run"),
        Binding("space", "toggle_run", "run module", show=False),
        Binding("o", "toggle_overwrite", "overwrite", show=False),
        Binding("a", "app.ab", "A/B view"),
        Binding("v", "app.dataset", "dataset view", show=False),
        Binding("question_mark", "app.help", "help"),
        # "q" as on the live screen (typed as a letter while the dataset field has focus, where
        # Textual lets the field have it); the app's own ctrl+q also quits but is not shown.
        Binding("q", "app.request_quit", "quit"),
        Binding("ctrl+q", "app.request_quit", "quit", show=False),
    ]

    def __init__(self, dataset: Path | None, profile: str | None = None):
        super().__init__()
        self.dataset = dataset
        self.profile_name = profile
        self.profile = None
        self.previous_profile = None
        self.summary: DatasetSummary | None = None
        self.chosen: dict[str, bool] = {}
        self.overwrite: dict[str, bool] = {}

    def compose(self) -> ComposeResult:
        specs = self.app.specs
        with VerticalScroll(id="setup-body"):
            with Vertical(id="dataset-box"):
                yield Input(value=str(self.dataset or ""), placeholder="dataset folder (one folder per track)",
                            id="dataset")
                yield Static("", id="dataset-summary")
            with Horizontal(id="profile-row"):
                names = list_names()
                yield OptionList(*(Option(n, id=n) for n in names), id="profiles")
                yield Static("", id="profile-env")
            yield DataTable(id="module-list", cursor_type="cell")
            with Horizontal(id="start-row"):
                flamingo = flamingo_backends(specs)
                if flamingo:
                    with Horizontal(id="flamingo-box"):
                        with RadioSet(id="flamingo"):
                            offered = flamingo_choices(specs)
                            for choice in offered:
                                yield RadioButton(FLAMINGO_CHOICES[choice], value=choice == offered[0], name=choice)
                        yield Input(value="5", type="integer", id="ab-count",
                                    tooltip="how many tracks the A/B compares, spread over the dataset")
                else:
                    yield Static(Text.assemble(("Flamingo back end: ", "bold"), (
                        "none installed in this build yet. The choice (GGUF quantisation through "
                        "llama-mtmd-cli, full transformers, or A/B of both) appears here once one is.",
                        "dim")), id="flamingo-box")
                yield Button("Start run  ctrl+s", id="start", variant="success")
        yield Footer()

    def on_resize(self, event) -> None:
        self.set_class(event.size.width < 100, "narrow")

    def on_mount(self) -> None:
        self.set_class(self.app.size.width < 100, "narrow")
        self.query_one("#dataset-box").border_title = "dataset"
        self.query_one("#profiles").border_title = "profile"
        self.query_one("#module-list").border_title = "modules  (space: run it · o: overwrite done tracks)"
        if self.query("#flamingo"):
            self.query_one("#flamingo-box").border_title = "Flamingo back end"
            self.query_one("#ab-count").border_title = "A/B tracks"
            self.query_one("#ab-count").display = False
        table = self.query_one("#module-list", DataTable)
        # The two switches side by side at the left: the state column can hold a fetch command
        # and pushed a right-hand "overwrite" off a 160-column screen.
        for label in ("run", "overwrite", "module", "device", "complete", "state", "description"):
            table.add_column(label, key=label)
        for name in self.app.specs:
            self.chosen[name] = True
            self.overwrite[name] = False
        if "flamingo_gguf" in self.chosen and "flamingo_hf" in self.chosen:
            self.chosen["flamingo_hf"] = False  # one back end per run; GGUF is the default choice
        options = self.query_one("#profiles", OptionList)
        names = list_names()
        wanted = self.profile_name if self.profile_name in names else ("cpu" if "cpu" in names else None)
        if wanted:
            options.highlighted = names.index(wanted)
        self.select_profile(wanted)
        self.call_after_refresh(self.rescan)
        table.focus()

    # -- dataset ---------------------------------------------------------------------------------
    async def rescan(self) -> None:
        text = self.query_one("#dataset", Input).value.strip()
        out = self.query_one("#dataset-summary", Static)
        if not text:
            out.update(Text("type the dataset folder and press enter", style="yellow"))
            return
        out.update(Text("scanning…", style="dim"))
        self.summary = await asyncio.to_thread(summarise_dataset, Path(text), self.app.specs)
        if self.summary.error:
            out.update(Text(self.summary.error, style="bold red"))
        else:
            line = Text(f"{self.summary.tracks:,} tracks found")
            if self.summary.problems:
                line.append(f" · {len(self.summary.problems)} folders skipped (first: "
                            f"{self.summary.problems[0]})", style="yellow")
            out.update(line)
        self.fill_modules()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.run_worker(self.rescan(), exclusive=True, group="scan")

    # -- profile ---------------------------------------------------------------------------------
    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if not event.option_list.has_focus:
            return  # the list settling on the initial choice, not the user switching profile
        if event.option.id != (self.profile.name if self.profile else None):
            self.select_profile(event.option.id)

    def select_profile(self, name: str | None) -> None:
        env_box = self.query_one("#profile-env", Static)
        if name is None:
            env_box.update(Text("no profiles found in profiles/", style="bold red"))
            return
        try:
            profile = load(name)
        except ProfileError as exc:
            env_box.update(Text(str(exc), style="bold red"))
            return
        self.previous_profile, self.profile = self.profile, profile
        env_box.border_title = f"what {profile.name} sets in the workers"
        backends = list(self.app.specs)
        jobs = f"{profile.jobs}" if profile.jobs else "one per core"
        head = Text.assemble((profile.description or "", "italic"), "\n",
                             f"device {profile.device} · jobs {jobs} · VRAM budget {profile.vram_budget_gb:g} GB")
        table = Table.grid(padding=(0, 1))
        table.add_column(style="dim", no_wrap=True)
        table.add_column(style="bold", no_wrap=True)
        table.add_column(overflow="fold")
        for scope, key, value in env_lines(profile, backends):
            table.add_row("all" if scope == "*" else scope, key, value)
        parts = [head, table]
        diff = env_diff(self.previous_profile, profile, backends)
        if diff:
            parts.append(Text(f"changes from {self.previous_profile.name}:", style="bold yellow"))
            changes = Table.grid(padding=(0, 1))
            changes.add_column(no_wrap=True)
            changes.add_column(style="bold", no_wrap=True)
            changes.add_column(overflow="fold")
            style = {"+": "green", "-": "red", "~": "yellow"}
            for sign, scope, key, value in diff:
                where = "" if scope == "*" else f" [{scope}]"
                changes.add_row(Text(sign, style=style[sign]), key + where, Text(value, style=style[sign]))
            parts.append(changes)
        env_box.update(Group(*parts))
        self.fill_modules()

    # -- modules ---------------------------------------------------------------------------------
    def fill_modules(self) -> None:
        table = self.query_one("#module-list", DataTable)
        cursor = table.cursor_row
        table.clear()
        for name, spec in self.app.specs.items():
            ready = readiness(spec, self.profile)
            if self.summary and not self.summary.error:
                done, total = self.summary.done.get(name, 0), self.summary.applicable.get(name, 0)
                complete = f"{done:,} / {total:,}"
            else:
                complete = "–"
            state = Text(ready.state + (f": {ready.fix}" if ready.fix else ""), style=STATE_STYLE[ready.state])
            device = spec.device + (f" {spec.vram_gb:g} GB" if spec.vram_gb else "")
            table.add_row(CHECK[self.chosen[name]], CHECK[self.overwrite[name]], name, device, complete, state,
                          spec.description, key=name)
        if table.row_count:
            table.move_cursor(row=min(cursor, table.row_count - 1))

    def _current_module(self) -> str | None:
        table = self.query_one("#module-list", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_toggle_run(self) -> None:
        name = self._current_module()
        if name:
            self.chosen[name] = not self.chosen[name]
            self.query_one("#module-list", DataTable).update_cell(name, "run", CHECK[self.chosen[name]])

    def action_toggle_overwrite(self) -> None:
        name = self._current_module()
        if name:
            self.overwrite[name] = not self.overwrite[name]
            self.query_one("#module-list", DataTable).update_cell(name, "overwrite", CHECK[self.overwrite[name]])

    def on_data_table_cell_selected(self, event: DataTable.CellSelected) -> None:
        column = event.cell_key.column_key.value
        if column == "run":
            self.action_toggle_run()
        elif column == "overwrite":
            self.action_toggle_overwrite()

    # -- Flamingo back end -------------------------------------------------------------------------
    def flamingo_choice(self) -> str | None:
        """``gguf``, ``hf`` or ``ab``; None when no Flamingo back end is installed."""
        radios = self.query("#flamingo")
        if not radios or not isinstance(radios.first(), RadioSet):
            return None
        pressed = radios.first().pressed_button
        return pressed.name if pressed is not None else "gguf"

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        if event.radio_set.id != "flamingo":
            return
        self.query_one("#ab-count").display = event.pressed.name == "ab"
        # The module list follows: only the chosen back end runs (both, in the A/B, on their own).
        choice = event.pressed.name
        for side, module in FLAMINGO_MODULES.items():
            if module in self.chosen:
                self.chosen[module] = choice == side
        self.fill_modules()

    # -- start -----------------------------------------------------------------------------------
    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_start()

    def action_start(self) -> None:
        dataset = Path(self.query_one("#dataset", Input).value.strip()).expanduser()
        if not dataset.is_dir():
            self.notify(f"{dataset}: dataset folder does not exist", severity="error")
            return
        if self.profile is None:
            self.notify("pick a profile first", severity="error")
            return
        choice = self.flamingo_choice()
        ab_tracks = 0
        if choice == "ab":
            try:
                ab_tracks = int(self.query_one("#ab-count", Input).value)
            except ValueError:
                ab_tracks = 0
            if ab_tracks < 1:
                self.notify("A/B: say how many tracks to compare (1 or more)", severity="error")
                return
        # The A/B runs both Flamingo back ends itself, on mirrors, never into the .INFO files.
        only = [n for n, on in self.chosen.items() if on and not (choice == "ab" and n in FLAMINGO_MODULES.values())]
        if not only and not ab_tracks:
            self.notify("no module is ticked: tick at least one (space)", severity="error")
            return
        overwrite = [n for n in only if self.overwrite[n]]
        self.app.start_from_setup(dataset, self.profile, only=only, overwrite=overwrite, ab_tracks=ab_tracks)
