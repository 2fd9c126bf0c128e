"""mirdeck run --cluster on a real two-node Ray cluster on this machine: the same .INFO as a local
run, a crash on a node retried as locally, a lost node's tracks finished on the other, the dataset
refused where a node cannot see it, and the GPUs an AMD worker is allowed to see."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.cluster.conftest import needs_ray
from tests.support.helpers import info_of, run_engine, sine, write_track
from tui.paths import ROOT
from tui.run.store import PROVENANCE_KEY

pytestmark = [needs_ray, pytest.mark.slow, pytest.mark.timeout(300)]

QUICK = ["audio_info", "loudness", "spectral"]
# What differs between two runs of the same code on the same audio: when and how fast.
TIMING = {"elapsed_s", "cpu_seconds", "realtime_factor", "realtime_per_core", "finished_at", "audio_seconds"}
MIRDECK = str(Path(sys.executable).with_name("mirdeck"))
# The test backends (tests.support.fake_backends) import from the checkout in the CLI's process too.
CHECKOUT = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))}


def synth_dataset(root: Path, count: int, seconds: float = 2.0) -> Path:
    """Tracks that differ in pitch, level and noise, so equal values are not equal by accident."""
    rng = np.random.default_rng(7)
    for i in range(count):
        tone = sine(110 * (i + 2), seconds, amplitude=0.1 + 0.15 * i)
        noise = (0.02 * (i + 1) * rng.standard_normal(tone.shape)).astype(np.float32)
        write_track(root, f"track{i:02d}", tone + noise)
    return root


def mirdeck_run(dataset: Path, log_dir: Path, *args: str, env: dict[str, str] | None = None,
                timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MIRDECK, "run", str(dataset), "--headless", "--log-dir", str(log_dir), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **CHECKOUT, **(env or {})})


def events(log_dir: Path) -> list[dict]:
    path = log_dir / "events.jsonl"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip().endswith("}")]


def without_timing(info: dict) -> dict:
    prov = {m: {k: v for k, v in p.items() if k not in TIMING} for m, p in info[PROVENANCE_KEY].items()}
    return {**{k: v for k, v in info.items() if k != PROVENANCE_KEY}, PROVENANCE_KEY: prov}


def test_a_cluster_run_writes_the_same_info_as_a_local_run(ray_cluster, tmp_path):
    local = synth_dataset(tmp_path / "local", 5)
    remote = synth_dataset(tmp_path / "remote", 5)
    run_engine(local, only=QUICK, jobs=2)
    done = mirdeck_run(remote, tmp_path / "log", "--only", ",".join(QUICK), "--cluster", ray_cluster.address)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    for folder in sorted(local.glob("track*")):
        here, there = info_of(folder), info_of(remote / folder.name)
        assert {m: p["status"] for m, p in there[PROVENANCE_KEY].items()} == {m: "ok" for m in QUICK}
        assert without_timing(there) == without_timing(here), folder.name

    # Both nodes did the work (the comparison above would hold for a cluster of one as well).
    started = [e for e in events(tmp_path / "log") if e["event"] == "worker_started" and e["module"] in QUICK]
    assert {e["node"] for e in started} == {ray_cluster.node_id(d)[:8] for d in ray_cluster.temp_dirs}
    # The headless output names the nodes and what each did.
    assert "nodes" in done.stdout
    for temp_dir in ray_cluster.temp_dirs:
        assert ray_cluster.node_id(temp_dir)[:8] in done.stdout


def test_a_driver_outside_the_cluster_runs_through_ray_client(ray_cluster, tmp_path):
    dataset = synth_dataset(tmp_path / "ds", 2, seconds=1.0)
    done = mirdeck_run(dataset, tmp_path / "log", "--only", "audio_info,loudness",
                       "--cluster", f"ray://127.0.0.1:{ray_cluster.client_port}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for folder in sorted(dataset.glob("track*")):
        info = info_of(folder)
        assert info["duration_seconds"] == 1.0 and info[PROVENANCE_KEY]["loudness"]["status"] == "ok"


def test_a_worker_crash_on_a_node_is_retried_on_a_fresh_worker(ray_cluster, tmp_path):
    dataset = tmp_path / "ds"
    for name in ("a_crashonce", "b_fine"):
        write_track(dataset, name, sine(440, 1.0))
    env = {"MIRDECK_EXTRA_BACKENDS": "tests.support.fake_backends.crashy"}
    done = mirdeck_run(dataset, tmp_path / "log", "--only", "crashy", "--cluster", ray_cluster.address, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in ("a_crashonce", "b_fine"):
        info = info_of(dataset / name)
        assert info["crashy_frames"] == 44100 and info[PROVENANCE_KEY]["crashy"]["status"] == "ok"
    seen = events(tmp_path / "log")
    retried = [e for e in seen if e["event"] == "module_failed" and e["attempt"] == 1]
    assert len(retried) == 1 and "a_crashonce" in retried[0]["track"] and "retrying" in retried[0]["message"]
    crashed = [e for e in seen if e["event"] == "worker_exited" and e["reason"] == "crash"]
    assert len(crashed) == 1 and crashed[0]["node"]


def test_a_dataset_a_node_cannot_see_is_refused_with_the_reason(ray_cluster, tmp_path):
    from tui.cluster.ray_cluster import Cluster, ClusterError

    cluster = Cluster(ray_cluster.address)
    cluster.connect()
    try:
        cluster.check_storage([str(tmp_path)])  # every node sees this machine's /tmp
        missing = str(tmp_path / "only-on-the-driver")
        with pytest.raises(ClusterError) as refused:
            cluster.check_storage([str(tmp_path), missing])
    finally:
        cluster.disconnect()
    assert f"does not see {missing}" in str(refused.value)
    assert "same paths" in str(refused.value) and "shared storage" in str(refused.value)


def test_an_address_where_no_cluster_listens_is_refused_at_once(tmp_path):
    from tests.support.ray_cluster import free_port

    dataset = synth_dataset(tmp_path / "ds", 1, seconds=0.5)
    port = free_port()  # closed again: nothing listens there
    done = mirdeck_run(dataset, tmp_path / "log", "--only", "audio_info", "--cluster", f"127.0.0.1:{port}",
                       timeout=60)
    assert done.returncode == 2
    assert f"cannot connect to the Ray cluster at 127.0.0.1:{port}: nothing answers" in done.stderr
    assert not (dataset / "track00" / "track00.INFO").exists()


def test_an_amd_worker_sees_only_the_gpu_ray_gave_its_actor(ray_cluster):
    """The environment of the real worker subprocess each actor started (from /proc): Ray's
    logical GPUs 0 and 1 of the second node, one per actor, in ROCR_VISIBLE_DEVICES, with HIP
    counting from 0 inside it."""
    from tui.cluster.ray_cluster import Cluster
    from tui.run.engine import Engine
    from tui.run.profiles import load

    cluster = Cluster(ray_cluster.address)
    cluster.connect()
    gpu_node = next(n for n in cluster.alive_nodes() if n.gpus == 2)
    env = Engine(ROOT, load("cpu")).child_env("noop")
    env["ROCR_VISIBLE_DEVICES"] = "0,1"  # what a profile might say: the actor's GPU wins

    async def start_two() -> list[dict[str, str]]:
        workers = [cluster.worker(gpu_node, "noop", "tests.support.fake_backends.noop", env, str(ROOT), "rocm",
                                  vram_gb=4, on_stderr=lambda *a: None) for _ in range(2)]
        try:
            await asyncio.gather(*(w.start(timeout=120) for w in workers))
            return [environ_of(w.pid) for w in workers]
        finally:
            await asyncio.gather(*(w.stop(grace=5) for w in workers))

    try:
        seen = asyncio.run(start_two())
    finally:
        cluster.disconnect()
    assert sorted(e["ROCR_VISIBLE_DEVICES"] for e in seen) == ["0", "1"]
    assert all(e["HIP_VISIBLE_DEVICES"] == "0" and e["CUDA_VISIBLE_DEVICES"] == "0" for e in seen)


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def test_a_node_lost_mid_run_leaves_its_tracks_to_the_other_node(fresh_cluster, tmp_path):
    dataset = synth_dataset(tmp_path / "ds", 8, seconds=1.0)
    log_dir = tmp_path / "log"
    modules = ["audio_info", "loudness", "slowaudio"]
    env = {**os.environ, **CHECKOUT, "MIRDECK_EXTRA_BACKENDS": "tests.support.fake_backends.slowaudio"}
    run = subprocess.Popen([MIRDECK, "run", str(dataset), "--headless", "--log-dir", str(log_dir), "--only",
                            ",".join(modules), "--set", "slowaudio.seconds=1.5", "--cluster", fresh_cluster.address],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)
    try:
        ids = {fresh_cluster.node_id(d)[:8]: d for d in fresh_cluster.temp_dirs}
        victim = None
        deadline = time.monotonic() + 120
        while victim is None and time.monotonic() < deadline and run.poll() is None:
            seen = events(log_dir)
            driver = {e["node"] for e in seen if e["event"] == "node_status" and e["driver"]}
            busy = {e["node"] for e in seen if e["event"] == "worker_started" and e["module"] == "slowaudio"}
            victim = next(iter(busy - driver), None)
            time.sleep(0.2)
        assert victim is not None, "the run never had slowaudio busy on the node the driver is not attached to"
        fresh_cluster.raylet(ids[victim]).kill()  # SIGKILL
        output, _ = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, output[-4000:]
    assert f"node {victim}" in output and "lost" in output
    for folder in sorted(dataset.glob("track*")):
        info = info_of(folder)  # parses: nothing half-written
        assert {m: info[PROVENANCE_KEY][m]["status"] for m in modules} == {m: "ok" for m in modules}, folder
        assert info["slowaudio_frames"] == 44100
    finished = [e for e in events(log_dir) if e["event"] == "track_finished"]
    assert len(finished) == 8 and all(not e["failed"] for e in finished)


def test_a_killed_driver_leaves_no_worker_behind_and_a_resume_completes(ray_cluster, tmp_path):
    dataset = synth_dataset(tmp_path / "ds", 6, seconds=1.0)
    env = {**os.environ, **CHECKOUT, "MIRDECK_EXTRA_BACKENDS": "tests.support.fake_backends.slowaudio"}
    args = ["--only", "audio_info,slowaudio", "--set", "slowaudio.seconds=1", "--cluster", ray_cluster.address]
    log_dir = tmp_path / "log"
    run = subprocess.Popen([MIRDECK, "run", str(dataset), "--headless", "--log-dir", str(log_dir), *args],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None:
            if sum(e["event"] == "module_finished" and e["module"] == "slowaudio" for e in events(log_dir)) >= 2:
                break
            time.sleep(0.2)
        assert run.poll() is None, "the run ended before it could be killed"
        run.kill()  # SIGKILL: no clean-up of any kind
        run.wait()
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    # Ray ends the actors of a driver that is gone, and each worker follows its actor.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and slowaudio_workers():
        time.sleep(0.5)
    assert not slowaudio_workers()
    for folder in sorted(dataset.glob("track*")):
        if (folder / f"{folder.name}.INFO").exists():
            info_of(folder)  # parses: nothing half-written
    done = subprocess.run([MIRDECK, "run", str(dataset), "--headless", "--log-dir", str(tmp_path / "log2"), *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    started = next(e for e in events(tmp_path / "log2") if e["event"] == "run_started")
    assert started["skipped"]["slowaudio"] >= 2  # the resume did not redo what the killed run finished
    for folder in sorted(dataset.glob("track*")):
        info = info_of(folder)
        assert info[PROVENANCE_KEY]["slowaudio"]["status"] == "ok" and info["slowaudio_frames"] == 44100


def slowaudio_workers() -> list[int]:
    import psutil

    # This checkout's workers only (they run in it): another checkout's tests may run slowaudio too.
    return [p.pid for p in psutil.process_iter(["cmdline", "cwd"])
            if "tests.support.fake_backends.slowaudio" in " ".join(p.info["cmdline"] or [])
            and "backends.worker" in " ".join(p.info["cmdline"] or []) and p.info["cwd"] == str(ROOT)]


def test_progress_of_a_track_on_a_node_reaches_the_driver_while_the_node_computes(ray_cluster, tmp_path):
    dataset = synth_dataset(tmp_path / "ds", 1)
    log_dir = tmp_path / "log"
    done = mirdeck_run(dataset, log_dir, "--only", "slowaudio", "--set", "slowaudio.seconds=3",
                       "--cluster", ray_cluster.address,
                       env={"MIRDECK_EXTRA_BACKENDS": "tests.support.fake_backends.slowaudio"})
    assert done.returncode == 0, done.stdout + done.stderr
    seen = events(log_dir)
    finished = next(e["time"] for e in seen if e["event"] == "module_finished" and e["module"] == "slowaudio")
    progress = [e for e in seen if e["event"] == "module_progress" and e["module"] == "slowaudio"]
    # The worker reports every 0.5 s of its 3 s (fractions 0 to 5/6). Handed over with the answer,
    # every report would reach the driver when the track is done; followed, the early ones come early.
    assert [round(e["fraction"], 2) for e in progress] == [0.0, 0.17, 0.33, 0.5, 0.67, 0.83]
    early = [e for e in progress if finished - e["time"] > 1.0]
    assert len(early) >= 3, [(e["fraction"], round(finished - e["time"], 2)) for e in progress]
