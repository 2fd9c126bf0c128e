"""A real Ray cluster of two one-CPU nodes on loopback, each with its own temp dir, for the
cluster tests and the cluster benchmark. Everything it starts is found by its temp dirs and
ended by pid: ``ray stop`` would end every Ray process on the machine, other users' too."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

START_TIMEOUT_S = 120
# Ray notices a lost node after period x threshold; its defaults (3 s x 5) would make the
# node-loss test wait half a minute, so this cluster's GCS checks faster.
FAST_HEALTH_CHECKS = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "3",
                      "RAY_health_check_initial_delay_ms": "500", "RAY_health_check_timeout_ms": "1000"}


def ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalCluster:
    port: int
    temp_dirs: list[Path] = field(default_factory=list)
    client_port: int = 0  # the head's Ray Client server (ray://), when started with one

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def processes(self, temp_dir: Path | None = None) -> list[psutil.Process]:
        """The Ray processes of this cluster (or of one of its nodes), by the temp dir in their command line."""
        dirs = [str(d) for d in ([temp_dir] if temp_dir else self.temp_dirs)]
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if proc.pid != os.getpid() and any(d in cmdline for d in dirs):
                found.append(proc)
        return found

    def raylet(self, temp_dir: Path) -> psutil.Process:
        for proc in self.processes(temp_dir):
            cmdline = proc.info["cmdline"] or []
            if cmdline and cmdline[0].endswith("/raylet"):
                return proc
        raise LookupError(f"no raylet found for {temp_dir}")

    def node_id(self, temp_dir: Path) -> str:
        """Ray's id of the node started with this temp dir (from its raylet's command line)."""
        for arg in self.raylet(temp_dir).info["cmdline"]:
            if arg.startswith("--node_id="):
                return str(arg.split("=", 1)[1])
        raise LookupError(f"no node id on the raylet of {temp_dir}")

    def stop(self) -> None:
        for proc in self.processes():
            try:
                proc.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(self.processes(), timeout=10)
        for d in self.temp_dirs:
            shutil.rmtree(d, ignore_errors=True)


def _ray_start(args: list[str]) -> None:
    env = {**os.environ, **FAST_HEALTH_CHECKS, "RAY_USAGE_STATS_ENABLED": "0"}
    done = subprocess.run([ray_cli(), "start", *args], capture_output=True, text=True, env=env,
                          timeout=START_TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"ray start {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def start_cluster(nodes: int = 2, fake_gpus: int = 0, client: bool = False) -> LocalCluster:
    """Start a head and ``nodes - 1`` more nodes on 127.0.0.1, one CPU each; the caller must ``stop``.
    ``fake_gpus``: GPUs the last node declares to Ray (a logical resource: nothing runs on them)."""
    cluster = LocalCluster(port=free_port(), client_port=free_port() if client else 0)
    try:
        for index in range(nodes):
            # Short paths: Ray puts Unix sockets in the temp dir (108 bytes at most).
            temp_dir = Path(tempfile.mkdtemp(prefix=f"mdr{index}-", dir="/tmp"))
            cluster.temp_dirs.append(temp_dir)
            common = ["--num-cpus", "1", "--temp-dir", str(temp_dir), "--node-ip-address", "127.0.0.1",
                      "--disable-usage-stats"]
            if fake_gpus and index == nodes - 1:
                common += ["--num-gpus", str(fake_gpus)]
            if index == 0:
                client_args = ["--ray-client-server-port", str(cluster.client_port)] if client else []
                _ray_start(["--head", "--port", str(cluster.port), "--include-dashboard", "false", *client_args,
                            *common])
            else:
                _ray_start(["--address", cluster.address, *common])
        _wait_for_nodes(cluster, nodes)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_for_nodes(cluster: LocalCluster, nodes: int) -> None:
    code = ("import ray,sys; ray.init(address=sys.argv[1], logging_level='error'); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))")
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        done = subprocess.run([sys.executable, "-c", code, cluster.address], capture_output=True, text=True,
                              timeout=START_TIMEOUT_S)
        if done.returncode == 0 and done.stdout.strip().splitlines()[-1:] == [str(nodes)]:
            return
        time.sleep(1)
    raise RuntimeError(f"the local Ray cluster did not reach {nodes} live nodes")
