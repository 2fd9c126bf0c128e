"""What the views show of a cluster's nodes, from the engine's node_status events (no Ray needed)."""
from __future__ import annotations

from rich.console import Console

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
