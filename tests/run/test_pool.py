"""The pool's pure rules: how many memory-hungry workers fit, and when one more worker pays."""
from __future__ import annotations

import collections

import psutil
import pytest

from tui.run import pool as pool_module
from tui.run.pool import ModulePool


class Host:
    """The engine's side of a pool, with a fixed number of planned requests."""

    def __init__(self, planned: int):
        self.planned = planned

    def planned_requests(self, name: str) -> int:
        return self.planned

    def child_env(self, module: str) -> dict[str, str]:
        return {}

    def worker_stderr(self, module: str, pid: int, line: str) -> None:
        pass

    def emit(self, event) -> None:
        pass


def test_workers_that_fit_take_half_the_available_memory(monkeypatch):
    memory = collections.namedtuple("memory", "available")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: memory(available=8 * 2 ** 30))
    assert pool_module.workers_that_fit(2.0) == 2
    assert pool_module.workers_that_fit(1.0) == 4
    assert pool_module.workers_that_fit(1.5) == 2
    assert pool_module.workers_that_fit(64.0) == 1  # never none


def pool_with(*, planned: int, served: int, count: int, startup_s: float | None,
              request_s: float | None) -> ModulePool:
    pool = ModulePool(Host(planned), "m", "entry", limit=8)
    pool.served, pool.count, pool.startup_s, pool.request_s = served, count, startup_s, request_s
    return pool


@pytest.mark.parametrize("planned, served, count, startup_s, request_s, expected", [
    (10, 0, 0, None, None, True),    # no worker yet: always start the first
    (10, 1, 1, 2.0, None, None),     # nothing finished yet: cannot judge
    (10, 2, 1, 2.0, 1.0, True),      # 8 left x 1 s on one worker outlasts a 2 s start-up
    (10, 8, 1, 2.0, 1.0, False),     # 2 left x 1 s: done as soon as a new worker would be ready
    (10, 2, 4, 2.0, 1.0, False),     # 8 left x 1 s over 4 workers is 2 s: not worth a fifth
    (12, 1, 1, 1.5, 0.02, False),    # quick requests beside a slow import
])
def test_another_worker_pays_only_when_the_remaining_work_outlasts_its_start_up(
        planned, served, count, startup_s, request_s, expected):
    pool = pool_with(planned=planned, served=served, count=count, startup_s=startup_s,
                     request_s=request_s)
    assert pool.worth_another_worker() is expected


def test_remaining_work_never_counts_below_one_request():
    # Served more than planned (retries): still one request's worth, never a negative rule.
    pool = pool_with(planned=3, served=5, count=1, startup_s=0.5, request_s=1.0)
    assert pool.worth_another_worker() is True
