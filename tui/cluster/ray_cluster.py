"""The driver side of ``mirdeck run --cluster``: connect to Ray, know the nodes, place each
track on one node, and give the engine workers that are Ray actors on that node.

What stays on the driver: scan, plan, the ``.INFO`` store, events, run log and every view. What
goes to a node: the track's decode and every module of that track, so decoded audio never
crosses the network (one decode per track per node, shared by the modules there).
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from tui.cluster.devices import gpu_fraction
from tui.cluster.relay import Relay, node_facts, remove_tree
from tui.run.supervisor import NodeLost, WorkerDied, WorkerTimeout

# A node's GPU memory, when the node was started with it as a custom resource
# (ray start --resources '{"mirdeck_gpu_memory_gb": 24}'): modules then share a GPU by VRAM.
GPU_MEMORY_RESOURCE = "mirdeck_gpu_memory_gb"
ACTOR_START_MARGIN_S = 120.0  # placing and starting an actor, on top of the worker's own start-up
CALL_MARGIN_S = 30.0  # the relay enforces the request timeout; this covers the hop
POLL_S = 0.5  # how often a request in flight hands over its progress and stderr
POLL_TIMEOUT_S = 10.0
LOST_CHECKS = (0.0, 1.0, 2.0, 4.0)  # seconds to wait before asking again whether a node is gone


class ClusterError(Exception):
    """The cluster cannot run this dataset (unreachable, no nodes, dataset not on shared storage)."""


@dataclass(eq=False)
class Node:
    id: str
    address: str
    cpus: float
    gpus: float
    gpu_memory_gb: float | None
    alive: bool = True
    in_flight: int = 0
    done: int = 0
    workers: int = 0
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))

    @property
    def short(self) -> str:
        return self.id[:8]


def unreachable(address: str, timeout: float = 5.0) -> str:
    """Why nothing answers at ``address`` (HOST:PORT or ray://HOST:PORT), or "" when something
    listens there (or the address is "auto", which Ray resolves itself)."""
    import socket

    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if address == "auto" or not host or not port.isdigit():
        return ""
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return ""
    except OSError as exc:
        return f"nothing answers at {host}:{port} ({exc.strerror or exc})"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ClusterError("--cluster needs Ray: install the 'ray' extra (pip install 'mirdeck[ray]', "
                           "or bin/setup --test)") from None
    return ray


CLIENT_ATTEMPTS = 3
CLIENT_RETRY_S = 2.0


class Cluster:
    def __init__(self, address: str):
        self.address = address
        self.ray = _ray()
        self.nodes: dict[str, Node] = {}
        self._remote_relay: Any = None
        self.driver_node = ""

    # -- connecting and knowing the nodes -----------------------------------------------------
    def connect(self) -> None:
        ray = self.ray
        refused = unreachable(self.address)
        if refused:  # Ray itself would retry for minutes before saying so
            raise ClusterError(f"cannot connect to the Ray cluster at {self.address}: {refused} "
                               "(start its head with: ray start --head --port PORT)")
        attempts = CLIENT_ATTEMPTS if self.address.startswith("ray://") else 1
        for attempt in range(attempts):
            try:
                ray.init(address=self.address, namespace="mirdeck", log_to_driver=False,
                         ignore_reinit_error=True, logging_level="warning")
                break
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError
                # Ray Client's server starts a process per client; on a busy head that process
                # can die as it starts ("Initialization failure from server"): ask again.
                if attempt + 1 < attempts and "Initialization failure" in str(exc):
                    ray.shutdown()
                    time.sleep(CLIENT_RETRY_S * (attempt + 1))
                    continue
                raise ClusterError(f"cannot connect to the Ray cluster at {self.address}: {exc}") from exc
        self._remote_relay = ray.remote(Relay)
        self.driver_node = ray.get_runtime_context().get_node_id()
        self.refresh()
        if not self.alive_nodes():
            raise ClusterError(f"the Ray cluster at {self.address} has no live node")

    def refresh(self) -> None:
        """Ask Ray which nodes are alive (a lost node stays listed, not alive)."""
        for info in self.ray.nodes():
            node_id = info["NodeID"]
            resources = info.get("Resources", {})
            node = self.nodes.get(node_id)
            if node is None:
                cpus = float(resources.get("CPU", 1.0))
                node = self.nodes[node_id] = Node(
                    id=node_id, address=info.get("NodeManagerAddress", "?"), cpus=cpus,
                    gpus=float(resources.get("GPU", 0.0)), gpu_memory_gb=resources.get(GPU_MEMORY_RESOURCE),
                    slots=asyncio.Semaphore(max(1, int(cpus))))
            node.alive = bool(info.get("Alive")) and node.alive  # a lost node is never trusted again

    def alive_nodes(self) -> list[Node]:
        return [node for node in self.nodes.values() if node.alive]

    @property
    def total_cpus(self) -> int:
        return max(1, int(sum(node.cpus for node in self.alive_nodes())))

    async def is_lost(self, node: Node) -> bool:
        """Whether the node left the cluster, asked a few times: Ray reports an actor's death
        a moment before it marks the node dead."""
        for wait in LOST_CHECKS:
            await asyncio.sleep(wait)
            await asyncio.to_thread(self.refresh)
            if not node.alive:
                return True
        return False

    def _on(self, node: Node, soft: bool = False) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return NodeAffinitySchedulingStrategy(node_id=node.id, soft=soft)

    # -- what runs on every node -----------------------------------------------------------------
    def check_storage(self, paths: list[str]) -> None:
        """Refuse a dataset that some node cannot see at the same path (no shared storage)."""
        facts = self.ray.remote(node_facts)
        refs = {node.id: facts.options(num_cpus=0, scheduling_strategy=self._on(node)).remote(paths)
                for node in self.alive_nodes()}
        for node_id, ref in refs.items():
            node = self.nodes[node_id]
            try:
                answer = self.ray.get(ref, timeout=120)
            except Exception as exc:
                raise ClusterError(f"node {node.short} ({node.address}) did not answer the storage check: "
                                   f"{exc}") from exc
            if answer["missing"]:
                raise ClusterError(
                    f"node {node.short} ({node.address}, host {answer['host']}) does not see "
                    f"{', '.join(answer['missing'][:3])}: every node must mount the dataset and this mirdeck "
                    "checkout at the same paths as the driver (shared storage, see docs/cluster.md)")

    async def facts(self, node: Node) -> dict[str, Any] | None:
        """The node's CPU and RAM use now, or None when it does not answer within a second."""
        ref = self.ray.remote(node_facts).options(num_cpus=0, scheduling_strategy=self._on(node)).remote([])
        try:
            return dict(await asyncio.wait_for(asyncio.wrap_future(ref.future()), 2.0))
        except Exception:
            self.ray.cancel(ref, force=True)
            return None

    async def remove_on(self, node: Node, path: str) -> None:
        if not node.alive:
            return
        ref = self.ray.remote(remove_tree).options(num_cpus=0, scheduling_strategy=self._on(node)).remote(path)
        try:
            await asyncio.wait_for(asyncio.wrap_future(ref.future()), 30.0)
        except Exception:
            pass  # a lost node's /dev/shm went with it

    # -- placing tracks ---------------------------------------------------------------------------
    def pick(self) -> Node:
        """The live node with the least work in flight for its CPUs."""
        nodes = self.alive_nodes()
        if not nodes:
            raise ClusterError("every node of the cluster is lost")
        return min(nodes, key=lambda n: (n.in_flight / n.cpus, n.id))

    def worker(self, node: Node, module: str, entry: str, env: dict[str, str], cwd: str, device: str,
               vram_gb: float, on_stderr: Callable[[str, int, str], None]) -> RayWorker:
        num_gpus = gpu_fraction(vram_gb, node.gpu_memory_gb) if node.gpus > 0 and device != "cpu" else 0.0
        return RayWorker(self, node, module, entry, env, cwd, device, num_gpus, on_stderr)

    def disconnect(self) -> None:
        if self.ray.is_initialized():
            self.ray.shutdown()


class RayWorker:
    """A worker of the engine's pools whose subprocess lives on a cluster node, behind a Ray actor
    (the same interface as tui.run.supervisor.WorkerProcess)."""

    def __init__(self, cluster: Cluster, node: Node, module: str, entry: str, env: dict[str, str], cwd: str,
                 device: str, num_gpus: float, on_stderr: Callable[[str, int, str], None]):
        self.cluster, self.node_info, self.module = cluster, node, module
        self.entry, self.env, self.cwd, self.device, self.num_gpus = entry, env, cwd, device, num_gpus
        self.on_stderr = on_stderr
        self.hello: dict[str, Any] = {}
        self.actor: Any = None
        self._pid = 0
        self._returncode: int | None = None
        self._killed = False  # by us (a stop, a hang): its death then says nothing about the node
        self.requests_done = 0

    @property
    def node(self) -> str:
        return self.node_info.short

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def _answer(self, ref: Any, limit: float) -> dict[str, Any]:
        ray = self.cluster.ray
        try:
            answer: dict[str, Any] = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(ref.future())), limit)
        except asyncio.TimeoutError:
            self.kill()
            if await self.cluster.is_lost(self.node_info):
                raise NodeLost(None, f"node {self.node} was lost") from None
            raise WorkerTimeout(f"no answer from node {self.node} within {limit:.0f} s") from None
        except ray.exceptions.RayError as exc:
            if not self._killed and await self.cluster.is_lost(self.node_info):
                raise NodeLost(None, f"node {self.node} ({self.node_info.address}) was lost") from exc
            raise WorkerDied(None, f"{self.module} actor on node {self.node} died: {exc}") from exc
        for line in answer.get("stderr", []):
            self.on_stderr(self.module, self._pid, line)
        if "died" in answer:
            self._returncode = answer["died"]
            from tui.run.supervisor import _describe_exit

            raise WorkerDied(self._returncode, _describe_exit(self.module, self._returncode) + f" on node {self.node}")
        if answer.get("timeout"):
            raise WorkerTimeout(f"no answer within {limit - CALL_MARGIN_S:.0f} s (node {self.node})")
        return answer

    async def start(self, timeout: float = 300.0) -> dict[str, Any]:
        self.node_info.workers += 1
        self.actor = self.cluster._remote_relay.options(
            num_cpus=0, num_gpus=self.num_gpus, max_concurrency=3, max_restarts=0,
            scheduling_strategy=self.cluster._on(self.node_info)).remote(
                self.module, self.entry, self.env, self.cwd, self.device)
        answer = await self._answer(self.actor.start.remote(timeout), timeout + ACTOR_START_MARGIN_S)
        self._pid = int(answer.get("worker_pid", 0))
        message = dict(answer["reply"])
        if message.get("type") != "hello":
            self.kill()
            raise WorkerDied(None, f"{self.module} worker spoke before hello: {message}")
        self.hello = message
        return message

    async def call(self, message: dict[str, Any], timeout: float,
                   on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        if self.actor is None:
            raise WorkerDied(None, f"{self.module} worker is not running")
        answered = asyncio.Event()
        follower = asyncio.create_task(self._follow(on_progress, answered))
        try:
            answer = await self._answer(self.actor.call.remote(message, timeout), timeout + CALL_MARGIN_S)
        except BaseException:
            follower.cancel()
            raise
        answered.set()
        await follower  # its last poll's lines come before the answer's own
        if on_progress:
            for progress in answer.get("progress", []):
                on_progress(progress)
        self.requests_done += 1
        return dict(answer["reply"])

    async def _follow(self, on_progress: Callable[[dict[str, Any]], None] | None, answered: asyncio.Event) -> None:
        """While a request is in flight: its progress and the worker's stderr, twice a second."""
        while not answered.is_set():
            try:
                await asyncio.wait_for(answered.wait(), POLL_S)
                return
            except asyncio.TimeoutError:
                pass
            try:
                live = await asyncio.wait_for(asyncio.wrap_future(self.actor.poll.remote().future()), POLL_TIMEOUT_S)
            except Exception:
                return  # a dead actor or a lost node: the call's answer says which
            for line in live.get("stderr", []):
                self.on_stderr(self.module, self._pid, line)
            if on_progress:
                for progress in live.get("progress", []):
                    on_progress(progress)

    def kill(self) -> None:
        self._killed = True
        if self.actor is not None:
            try:
                self.actor.kill.remote()  # the subprocess first: it leads its own process group
                self.cluster.ray.kill(self.actor, no_restart=True)
            except Exception:
                pass

    async def stop(self, grace: float = 10.0) -> int | None:
        if self.actor is None:
            return None
        actor, self.actor = self.actor, None
        try:
            answer = await asyncio.wait_for(asyncio.wrap_future(actor.stop.remote(grace).future()), grace + 10)
            for line in answer.get("stderr", []):
                self.on_stderr(self.module, self._pid, line)
            self._returncode = answer.get("returncode")
        except Exception:
            pass  # dead already (killed, or its node lost)
        try:
            self.cluster.ray.kill(actor, no_restart=True)
        except Exception:
            pass
        self.node_info.workers = max(0, self.node_info.workers - 1)
        return self._returncode


def status_of(node: Node, facts: dict[str, Any] | None, driver_node: str = "") -> dict[str, Any]:
    """The fields of a NodeStatus event."""
    facts = facts or {}
    return {"node": node.short, "address": node.address, "alive": node.alive, "cpus": node.cpus,
            "cpu_percent": facts.get("cpu_percent"),
            "ram_used_gb": round(facts["ram_used_gb"], 2) if "ram_used_gb" in facts else None,
            "ram_total_gb": round(facts["ram_total_gb"], 2) if "ram_total_gb" in facts else None,
            "gpus": node.gpus,
            "gpu_memory_used_gb": _rounded(facts.get("gpu_memory_used_gb")),
            "gpu_memory_total_gb": _rounded(facts.get("gpu_memory_total_gb")),
            "workers": node.workers, "tracks_in_flight": node.in_flight,
            "tracks_done": node.done, "driver": node.id == driver_node, "time": time.time()}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)

