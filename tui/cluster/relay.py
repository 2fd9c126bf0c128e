"""The node side of a cluster worker: inside a Ray actor, start ``python -m backends.worker MODULE``
on this node with the run's environment, and relay protocol lines between it and the driver.

The subprocess is the same one the local scheduler starts, so isolation, error kinds and the
protocol are unchanged; the actor only adds the hop over Ray. The worker's progress messages and
stderr lines are kept until the driver asks for them (``poll``, twice a second while a request is
in flight, so the dashboard moves while a node computes) or the answer takes the rest along.
"""
from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from backends import protocol as p
from tui.cluster.devices import GPU_VARIABLES, visible_devices_env

STDERR_KEEP = 2000  # lines held between two answers; more is dropped with a note


class Relay:
    """Ray wraps this class (``ray.remote``) in tui.cluster.ray_cluster; it runs on one node."""

    def __init__(self, module: str, entry: str, env: dict[str, str], cwd: str, device: str):
        self.module, self.entry, self.base_env, self.cwd, self.device = module, entry, env, cwd, device
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.stderr: list[str] = []
        self.progress: list[dict[str, Any]] = []  # of the request in flight, not yet handed over
        self.lock = threading.Lock()

    def environment(self) -> dict[str, str]:
        """The worker's environment: the run's, with the GPUs Ray gave this actor."""
        import ray

        env = dict(self.base_env)
        gpu_ids = [str(i) for i in ray.get_gpu_ids()]
        if gpu_ids:
            for name in GPU_VARIABLES:
                env.pop(name, None)
            env.update(visible_devices_env(gpu_ids, self.device))
        return env

    def where(self) -> dict[str, Any]:
        import ray

        return {"node": ray.get_runtime_context().get_node_id(), "host": socket.gethostname(), "pid": os.getpid()}

    def start(self, timeout: float) -> dict[str, Any]:
        self.proc = subprocess.Popen([sys.executable, "-m", "backends.worker", self.entry],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=self.environment(), cwd=self.cwd, start_new_session=True)
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        answer = self._answer(timeout)
        return {**answer, **self.where(), "worker_pid": self.proc.pid}

    def _read_stdout(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.proc and self.proc.stderr
        for raw in self.proc.stderr:
            with self.lock:
                if len(self.stderr) < STDERR_KEEP:
                    self.stderr.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def _drain_stderr(self) -> list[str]:
        with self.lock:
            lines, self.stderr = self.stderr, []
        return lines

    def _drain(self) -> dict[str, Any]:
        """What the driver has not been handed yet, in the order it came (each line exactly once)."""
        with self.lock:
            progress, self.progress = self.progress, []
            lines, self.stderr = self.stderr, []
        return {"progress": progress, "stderr": lines}

    def poll(self) -> dict[str, Any]:
        """Called by the driver while a request is in flight (the actor serves it beside ``call``)."""
        return self._drain()

    def _answer(self, timeout: float) -> dict[str, Any]:
        """The next message that is not progress: {"reply"}, or {"died": returncode}, or {"timeout"}."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                return {"timeout": True, **self._drain()}
            if line is None:
                assert self.proc
                returncode = self.proc.wait()
                time.sleep(0.05)  # the stderr thread's last lines (a traceback) come with the answer
                return {"died": returncode, **self._drain()}
            try:
                message = p.decode(line)
            except ValueError as exc:
                with self.lock:
                    self.stderr.append(f"[mirdeck] protocol garbage: {exc}")
                continue
            if message["type"] == "progress":
                with self.lock:
                    self.progress.append(message)
                continue
            return {"reply": message, **self._drain()}

    def call(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc and self.proc.stdin
        try:
            self.proc.stdin.write(p.encode(message))
            self.proc.stdin.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the reader reports the death with the exit code
        return self._answer(timeout)

    def kill(self) -> None:
        """SIGKILL the worker and everything it started (it leads its own process group)."""
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self, grace: float) -> dict[str, Any]:
        if self.proc is None:
            return {"returncode": None, "stderr": []}
        if self.proc.poll() is None and self.proc.stdin:
            try:
                self.proc.stdin.write(p.encode(p.SHUTDOWN))
                self.proc.stdin.close()
            except (BrokenPipeError, ConnectionResetError, ValueError):
                pass
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.kill()
                self.proc.wait()
        return {"returncode": self.proc.returncode, "stderr": self._drain_stderr()}


_gpu_probe: Any = None  # opened once per Ray worker process: the facts are asked for every few seconds


def gpu_memory_gb(snapshot: Any) -> tuple[float | None, float | None]:
    """GPU memory used and total over the node's devices, in GiB (None where no device tells)."""
    used = [d.vram_used for d in snapshot.devices if d.vram_used is not None]
    total = [d.vram_total for d in snapshot.devices if d.vram_total is not None]
    return (sum(used) / 2 ** 30 if used else None), (sum(total) / 2 ** 30 if total else None)


def node_facts(paths: list[str]) -> dict[str, Any]:
    """Run on a node (a Ray task): which of ``paths`` it sees, and its load, for the driver."""
    import psutil

    from tui.gpu import open_probe

    global _gpu_probe
    try:
        if _gpu_probe is None:
            _gpu_probe = open_probe()  # the dashboard's own probe: NVML, amdsmi or sysfs, else none
        gpu_used, gpu_total = gpu_memory_gb(_gpu_probe.read())
    except Exception:  # a driver that went away: no reading, never a made-up one
        gpu_used = gpu_total = None
    memory = psutil.virtual_memory()
    used_gb = (memory.total - memory.available) / 2 ** 30
    return {"host": socket.gethostname(), "missing": [path for path in paths if not os.path.exists(path)],
            "cpu_percent": psutil.cpu_percent(interval=0.2), "ram_used_gb": used_gb,
            "ram_total_gb": memory.total / 2 ** 30, "gpu_memory_used_gb": gpu_used,
            "gpu_memory_total_gb": gpu_total}


def remove_tree(path: str) -> None:
    """Run on a node (a Ray task): remove a track's decoded audio there."""
    import shutil

    shutil.rmtree(path, ignore_errors=True)
