"""Ray Client's server can lose the process it starts for a new client on a busy head; the
connection is asked for again (twice) before the run is refused, and only for that failure."""
from __future__ import annotations

import socket

import pytest

from tui.cluster import ray_cluster
from tui.cluster.ray_cluster import Cluster, ClusterError


class FlakyRay:
    """Ray's ``init``/``shutdown`` as a client sees them when the server fails ``failures`` times."""

    def __init__(self, failures: int, message: str = "Initialization failure from server: ZombieProcess"):
        self.failures, self.message = failures, message
        self.inits = self.shutdowns = 0

    def init(self, **kwargs):
        self.inits += 1
        if self.inits <= self.failures:
            raise ConnectionError(self.message)
        raise RuntimeError("connected")  # far enough: what follows needs a real cluster

    def shutdown(self):
        self.shutdowns += 1


@pytest.fixture
def listening():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def _connect(address: str, fake: FlakyRay) -> str:
    cluster = Cluster.__new__(Cluster)
    cluster.address, cluster.ray, cluster.nodes, cluster._remote_relay, cluster.driver_node = (
        address, fake, {}, None, "")
    with pytest.raises(ClusterError) as caught:
        cluster.connect()
    return str(caught.value)


def test_a_client_connection_the_server_failed_to_start_is_tried_again(listening, monkeypatch):
    monkeypatch.setattr(ray_cluster, "CLIENT_RETRY_S", 0.0)
    fake = FlakyRay(failures=2)
    assert "connected" in _connect(f"ray://127.0.0.1:{listening}", fake)  # the third attempt got through
    assert fake.inits == 3 and fake.shutdowns == 2
    always = FlakyRay(failures=10)
    assert "Initialization failure" in _connect(f"ray://127.0.0.1:{listening}", always)
    assert always.inits == ray_cluster.CLIENT_ATTEMPTS


def test_other_failures_and_direct_addresses_are_not_retried(listening, monkeypatch):
    monkeypatch.setattr(ray_cluster, "CLIENT_RETRY_S", 0.0)
    other = FlakyRay(failures=5, message="version mismatch")
    assert "version mismatch" in _connect(f"ray://127.0.0.1:{listening}", other) and other.inits == 1
    direct = FlakyRay(failures=5)
    assert "Initialization failure" in _connect(f"127.0.0.1:{listening}", direct) and direct.inits == 1
