"""What the views show of a cluster's nodes, from the engine's node_status events (no Ray needed)."""
from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from tests.support.dashboard import plain, sync
from tui.dashboard.runview import RunView
from tui.headless import HeadlessPrinter
from tui.run import events as ev


def statuses() -> list[ev.NodeStatus]:
    head = dict(node="aaaa1111", address="10.0.0.1", cpus=4.0, driver=True, ram_total_gb=16.0, ram_used_gb=3.5,
                cpu_percent=40.0)
    other = dict(node="bbbb2222", address="10.0.0.2", cpus=8.0, gpus=1.0, ram_total_gb=64.0, ram_used_gb=9.0,
                 cpu_percent=90.0)
    return [ev.NodeStatus(alive=True, **head), ev.NodeStatus(alive=True, workers=3, tracks_in_flight=2, **other),
            ev.NodeStatus(alive=True, workers=2, tracks_in_flight=1, tracks_done=12, **head),
            ev.NodeStatus(alive=False, tracks_done=7, **other)]


def test_headless_output_names_each_node_says_when_one_is_lost_and_ends_with_a_node_table():
    console = Console(record=True, width=120)
    printer = HeadlessPrinter(console, live=False)
    for status in statuses():
        printer(status)
    printer(ev.RunFinished(stopped=False, wall_seconds=3.0, summary={}))
    text = console.export_text()
    assert "node aaaa1111 (10.0.0.1, driver): 4 CPU, RAM 16.0 GB" in text
    assert "node bbbb2222 (10.0.0.2): 8 CPU, 1 GPU, RAM 64.0 GB" in text
    assert "node bbbb2222 (10.0.0.2) lost" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(("aaaa", "bbbb"))}
    assert rows["aaaa1111"][2:4] == ["alive", "(driver)"] and rows["aaaa1111"][-1] == "12"
    assert rows["bbbb2222"][2] == "lost" and rows["bbbb2222"][-1] == "7"


def test_the_dashboard_keeps_the_latest_status_of_each_node_and_logs_joins_and_losses():
    view = RunView()
    for status in statuses():
        view(status)
    assert view.nodes["aaaa1111"].tracks_done == 12 and not view.nodes["bbbb2222"].alive
    messages = [entry.message for entry in view.log]
    assert messages[0].startswith("node aaaa1111 (10.0.0.1, driver): 4 CPU")
    assert [m for m in messages if "lost" in m] == [
        "node bbbb2222 (10.0.0.2) lost: its tracks in flight go to the other nodes"]


FIX = Path(__file__).resolve().parents[1] / "gpu" / "fixtures"


def test_node_facts_read_the_gpu_memory_of_the_node_through_the_dashboards_probe(monkeypatch):
    from tui.cluster import relay
    from tui.gpu import NullProbe
    from tui.gpu.sysfs import SysfsProbe

    card = FIX / "sysfs-rx9070xt-6.14" / "card1" / "device"
    used, total = (int((card / f"mem_info_vram_{k}").read_text()) for k in ("used", "total"))
    monkeypatch.setattr(relay, "_gpu_probe", SysfsProbe(drm_root=FIX / "sysfs-rx9070xt-6.14",
                                                        proc_root=FIX / "proc-6.10"))
    facts = relay.node_facts([])
    assert facts["gpu_memory_used_gb"] == pytest.approx(used / 2 ** 30)
    assert facts["gpu_memory_total_gb"] == pytest.approx(total / 2 ** 30)
    monkeypatch.setattr(relay, "_gpu_probe", NullProbe())
    facts = relay.node_facts([])
    assert facts["gpu_memory_used_gb"] is None and facts["gpu_memory_total_gb"] is None  # never a made-up 0


def gpu_statuses() -> list[ev.NodeStatus]:
    gpu = dict(node="cccc3333", address="10.0.0.3", cpus=16.0, gpus=1.0, ram_total_gb=128.0, ram_used_gb=20.0,
               cpu_percent=55.0, gpu_memory_total_gb=15.92, alive=True)
    return [ev.NodeStatus(gpu_memory_used_gb=1.2, **gpu), ev.NodeStatus(gpu_memory_used_gb=13.9, workers=2, **gpu),
            ev.NodeStatus(gpu_memory_used_gb=0.4, tracks_done=30, **gpu)]


def test_the_headless_node_table_gives_each_nodes_peak_gpu_memory():
    console = Console(record=True, width=160)
    printer = HeadlessPrinter(console, live=False)
    for status in statuses() + gpu_statuses():
        printer(status)
    printer(ev.RunFinished(stopped=False, wall_seconds=3.0, summary={}))
    rows = {line.split()[0]: line.split() for line in console.export_text().splitlines()
            if line.startswith(("aaaa", "cccc"))}
    assert "13.9/15.9" in rows["cccc3333"]  # the peak, not the idle last reading
    assert rows["aaaa1111"][8] == "–"  # a node without a GPU reading says so


@sync
async def test_the_dashboards_host_panel_shows_each_node_and_its_gpu_memory():
    from textual.app import App

    from tui.dashboard.widgets.panels import HostPanel

    view = RunView()
    for status in statuses() + gpu_statuses()[:2]:
        view(status)

    class Host(App):
        def compose(self):
            yield HostPanel(id="host")

    app = Host()
    async with app.run_test(size=(60, 20)) as pilot:
        panel = app.query_one(HostPanel)
        panel.render_view(view, width=50)
        await pilot.pause()
        lines = [line.rstrip() for line in plain(panel).splitlines() if line.strip()]
    nodes = [line for line in lines if line.startswith(("node", "  "))]
    assert nodes == ["node aaaa1111   40%  2w  1 now    12 done",
                     "node bbbb2222  lost  0w  0 now     7 done",
                     "node cccc3333   55%  2w  0 now     0 done",
                     "  1 GPU 13.9/15.9 GiB"], lines
