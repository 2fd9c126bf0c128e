"""A real two-node Ray cluster on this machine for the --cluster tests: started by the fixture,
always ended (by pid) when the tests are done, failed or not. Skipped without the 'ray' extra."""
from __future__ import annotations

import importlib.util

import pytest

from tests.support.ray_cluster import LocalCluster, start_cluster

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed (the 'ray' extra; bin/setup --test installs it)")


@pytest.fixture(scope="module")
def ray_cluster():
    """Two nodes of one CPU each; the second declares two (logical) GPUs; the head serves Ray Client."""
    cluster: LocalCluster = start_cluster(nodes=2, fake_gpus=2, client=True)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def fresh_cluster():
    """Two nodes for a test that breaks one of them."""
    cluster = start_cluster(nodes=2)
    try:
        yield cluster
    finally:
        cluster.stop()
