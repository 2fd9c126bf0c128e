"""``mirdeck run DATASET --dry-run``: what a run would do, from the same plan the engine starts with,
without starting a worker or writing anything (no run folder, no .INFO, no lock held)."""
from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from tui.run import events as ev


def plan_table(engine: Any) -> tuple[Table, list[str]]:
    """The table of the plan, and the lines to print after it (sweeps, VRAM, problems). Modules whose
    models are not installed never get here: the command line leaves them out (or refuses them)
    and says so first."""
    warnings: list[str] = []
    engine.subscribe(lambda e: warnings.append(e.message) if isinstance(e, ev.Warning) else None)
    scanned, modules, plan = engine.make_plan()
    planned = plan.planned()
    gpu_planned = any(planned[m] for m in modules if engine.specs[m].device == "gpu")
    if engine.cluster is None and gpu_planned:
        engine._check_free_vram()
    sweeps = engine.passes(modules)  # as the run splits them: every module, planned or not
    sweep_of = {m: i + 1 for i, sweep in enumerate(sweeps) for m in sweep}
    sweep_with = {m: sweep for sweep in sweeps for m in sweep}
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for column in ("module", "to run", "done", "n/a", "why n/a", "notes"):
        table.add_column(column, justify="right" if column in ("to run", "done", "n/a") else "left")
    for name in modules:
        reasons = plan.not_applicable_reasons.get(name, {})
        why = ", ".join(f"{reason} ({count})" for reason, count in reasons.items())
        notes = []
        per_call = engine.tracks_per_call(name, sweep=sweep_with.get(name)) if planned[name] else 1
        if per_call > 1:
            notes.append(f"{per_call} tracks per call")
        if len(sweeps) > 1 and name in sweep_of:
            notes.append(f"sweep {sweep_of[name]} of {len(sweeps)}")
        table.add_row(name, str(planned[name]), str(plan.skipped[name]), str(plan.not_applicable[name]), why,
                      "; ".join(notes))
    after = []
    if len(sweeps) > 1:
        after.append(f"{len(sweeps)} sweeps: the GPU modules do not fit the {engine.vram_budget_gb:g} GB VRAM "
                     "budget together, so the tracks are decoded once per sweep")
    after += [f"warning: {w}" for w in warnings]
    problems = scanned.problems + plan.problems
    after += [f"skipped: {p}" for p in problems[:10]]
    if len(problems) > 10:
        after.append(f"… and {len(problems) - 10} more (mirdeck scan lists them all)")
    return table, after


def print_plan(engine: Any, console: Console | None = None) -> None:
    console = console or Console()
    table, after = plan_table(engine)
    plan = engine.plan
    total = sum(plan.planned().values()) if plan is not None else 0
    console.print(f"dry run on {engine.dataset} with profile {engine.profile.name} ({engine.profile.device}): "
                  f"{len(plan.tracks) if plan else 0} tracks to work on, {total} module runs; nothing was "
                  "started or written", highlight=False)
    console.print(table)
    for line in after:
        console.print(line, highlight=False, soft_wrap=True)
