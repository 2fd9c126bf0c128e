"""The run engine: scan, plan, decode once, schedule workers, merge results, emit events.

UI-free: every view subscribes to the typed events in ``tui.run.events``.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from backends import protocol
from backends.protocol import ErrorKind
from backends.registry import all_specs
from backends.spec import BackendSpec, options_hash, output_options, tracks_per_call_for
from tui import paths
from tui.run import events as ev
from tui.run import scratch as scratch_dirs
from tui.run import stems, store
from tui.run.batching import PendingTrack, TrackBatcher
from tui.run.dataset import scan
from tui.run.plan import Plan, TrackPlan, make_plan, resolve_modules
from tui.run.pool import ModulePool, ModuleUnavailable, workers_that_fit
from tui.run.profiles import Profile
from tui.run.supervisor import NodeLost, WorkerDied, WorkerTimeout

DECODER_ENTRY = "backends.decoder"
# Why a module failed on a track, as recorded in provenance: the protocol's kinds, plus two that
# only the engine knows (the .INFO could not be written; the run was stopped before an answer,
# which is never recorded).
BAD_INPUT, INTERNAL = ErrorKind.BAD_INPUT.value, ErrorKind.INTERNAL.value
CRASH, TIMEOUT = ErrorKind.CRASH.value, ErrorKind.TIMEOUT.value
STORE = "store"
STOPPED = "stopped"
# A track's modules whose node left the cluster before they answered: never recorded, run again
# on another node (--cluster only).
NODE_LOST = "node_lost"
NODE_LOST_RETRIES = 3
NODE_STATUS_EVERY_S = 3.0
DECODE_TIMEOUT_S = 600.0


# Exit status of ``mirdeck run``/``demo`` (README, "Exit status").
EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_STOPPED = 0, 1, 2, 3


class NodeLostDuringDecode(Exception):
    """The node decoding a track was lost: the whole track goes to another node."""


@dataclass
class RunOptions:
    only: list[str] = field(default_factory=list)
    skip: list[str] = field(default_factory=list)
    overwrite: list[str] = field(default_factory=list)
    jobs: int | None = None
    log_dir: Path | None = None
    module_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    # A Ray cluster to run the workers on ("auto", "HOST:PORT" or "ray://HOST:PORT"); None: this machine.
    cluster: str | None = None


@dataclass
class ModuleStats:
    planned: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    not_applicable: int = 0
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    last_rtf: float | None = None

    @property
    def realtime_factor(self) -> float | None:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else None

    @property
    def realtime_per_core(self) -> float | None:
        """Audio seconds per CPU second: what the module costs, however busy the machine was."""
        return self.audio_seconds / self.cpu_seconds if self.cpu_seconds > 0 else None

    def to_dict(self) -> dict[str, float | None]:
        return {"planned": self.planned, "done": self.done, "failed": self.failed,
                "skipped": self.skipped, "not_applicable": self.not_applicable,
                "audio_seconds": round(self.audio_seconds, 3),
                "wall_seconds": round(self.wall_seconds, 3),
                "cpu_seconds": round(self.cpu_seconds, 3),
                "realtime_factor": round(self.realtime_factor, 3) if self.realtime_factor else None,
                "realtime_per_core": round(self.realtime_per_core, 3) if self.realtime_per_core else None}


@dataclass
class Outcome:
    ok: bool
    features: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    kind: str = ""
    message: str = ""
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)


class Engine:
    def __init__(self, dataset: str | os.PathLike[str], profile: Profile, options: RunOptions | None = None,
                 specs: dict[str, BackendSpec] | None = None):
        self.dataset = Path(dataset).resolve()
        self.profile = profile
        self.options = options or RunOptions()
        self.specs = specs if specs is not None else all_specs()
        self.jobs = self.options.jobs or profile.effective_jobs()
        self.subscribers: list[Callable[[ev.Event], None]] = []
        self.stats: dict[str, ModuleStats] = {}
        self.pools: dict[str, ModulePool] = {}
        self.plan: Plan | None = None
        self.run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        self.log_dir = self._choose_log_dir()
        self._workers_log: TextIO | None = None
        self._stopping = False
        self._aborting = False
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._cpu_slots: asyncio.Semaphore | None = None
        self.scratch = paths.pcm_scratch_dir() / f"{scratch_dirs.PREFIX}{self.run_id}"
        self._settled: set[tuple[str, str]] = set()  # (track, module) that ran: ok or failed
        self.longest_mix: dict[str, float | None] = {}  # module -> longest planned mix (s), when sized by it
        self.cluster: Any = None  # tui.cluster.ray_cluster.Cluster, with --cluster only
        self._tracks_per_call: dict[str, int] = {}  # module -> tracks one call carries (sized once per run)
        self.batchers: dict[str, TrackBatcher] = {}  # pool key -> its batcher (modules that batch tracks)
        self._yet_to_submit: dict[str, int] = {}  # batching module -> its requests still to come this sweep
        self.vram_budget_gb = profile.vram_budget_gb  # lowered at the start when the GPU has less free
        self.gpu_probe: Callable[[], Any] | None = None  # tests give a probe; None: tui.gpu.open_probe

    def connect_cluster(self) -> None:
        """With --cluster: connect to Ray and check that every node sees the dataset and this
        checkout at the driver's paths. Raises tui.cluster.ray_cluster.ClusterError, whose message
        says what is wrong. Ray is imported here only: the local scheduler never loads it."""
        if not self.options.cluster or self.cluster is not None:
            return
        from tui.cluster.ray_cluster import Cluster

        cluster = Cluster(self.options.cluster)
        cluster.connect()
        try:
            cluster.check_storage([str(self.dataset), str(paths.ROOT / "backends" / "worker.py")])
        except Exception:
            cluster.disconnect()
            raise
        self.cluster = cluster
        if not self.options.jobs:
            self.jobs = cluster.total_cpus

    # -- control, callable from any view -------------------------------------------------------
    def subscribe(self, callback: Callable[[ev.Event], None]) -> None:
        self.subscribers.append(callback)

    def stop(self, *, immediate: bool = False) -> None:
        """Graceful: the requests workers are computing finish; nothing not yet sent to a worker
        is sent (a track waiting for its decode or a module waiting for a worker stays undone).
        Immediate: kill the workers now. Either way ``RunFinished.left`` says what did not run."""
        self._stopping = True
        self._unpaused.set()
        if immediate:
            self._aborting = True
            for pool in self.pools.values():
                pool.kill_all()

    def pause(self) -> None:
        self._unpaused.clear()

    def resume(self) -> None:
        self._unpaused.set()

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    # -- plumbing ------------------------------------------------------------------------------
    def emit(self, event: ev.Event) -> None:
        for callback in self.subscribers:
            callback(event)

    def _choose_log_dir(self) -> Path:
        """Inside the dataset when it is writable, else in the cache. Nothing is created here:
        a run refused before it starts (an unknown module) leaves no folder behind."""
        if self.options.log_dir:
            return Path(self.options.log_dir)
        inside = self.dataset / ".mirdeck" / "runs" / self.run_id
        existing = next((p for p in (inside, *inside.parents) if p.exists()), None)
        if existing is not None and existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
            return inside
        return paths.cache_dir() / "runs" / self.run_id

    def child_env(self, module: str) -> dict[str, str]:
        env = self.profile.child_env(module)
        env["MIRDECK_MODELS_DIR"] = str(paths.models_dir())
        env["PYTHONUNBUFFERED"] = "1"
        # The profile's [llama] table (build variant, GPU layers, threads) for the llama.cpp backends.
        for key, value in self.profile.llama.items():
            env[f"MIRDECK_LLAMA_{key.upper()}"] = str(value)
        # The worker imports ``backends`` from this checkout whatever the caller's sys.path was.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.ROOT), env.get("PYTHONPATH", "")]))
        return env

    def worker_stderr(self, module: str, pid: int, line: str) -> None:
        if self._workers_log is not None:
            self._workers_log.write(f"{time.strftime('%H:%M:%S')} {module}[{pid}] {line}\n")
            self._workers_log.flush()
        self.emit(ev.WorkerLog(module=module, pid=pid, line=line))

    def stem_caches(self) -> dict[str, Path | None]:
        """Provider -> the cache folder its option ``cache_dir`` names (None: the track folders)."""
        return {name: stems.cache_dir_of(self.options_for(name))
                for name, spec in self.specs.items() if spec.provides}

    def _uses_cpu_slot(self, spec: BackendSpec) -> bool:
        return spec.device == "cpu" or self.profile.device == "cpu"

    def planned_requests(self, name: str) -> int:
        """Requests a pool serves over the whole run: one per planned track of a module, and one
        decode per track that has work."""
        if name == "decode":
            return len(self.plan.tracks) if self.plan is not None else 0
        stats = self.stats.get(name)
        return stats.planned if stats is not None else 0

    def _pool(self, name: str, node: Any = None) -> ModulePool:
        """The module's pool here, or on one cluster node (one pool per module per node)."""
        key = name if node is None else f"{name}@{node.id}"
        if key not in self.pools:
            jobs = self.jobs if node is None else max(1, int(node.cpus))
            entry = DECODER_ENTRY if name == "decode" else self.specs[name].entry
            limit = jobs
            if name != "decode":
                spec = self.specs[name]
                limit = jobs if spec.device == "cpu" else 1
                if spec.max_workers:
                    limit = min(limit, spec.max_workers)
                if spec.worker_memory_gb > 0 and node is None:
                    limit = min(limit, workers_that_fit(spec.worker_memory_gb))
            make_worker = None
            if node is not None:
                vram = 0.0 if name == "decode" else self.specs[name].vram_gb
                device = "cpu" if name == "decode" or self.specs[name].device == "cpu" else self.profile.device

                def make_worker(name: str = name, entry: str = entry, vram: float = vram,
                                device: str = device) -> Any:
                    return self.cluster.worker(node, name, entry, self.child_env(name), str(paths.ROOT),
                                               device, vram, self.worker_stderr)
            self.pools[key] = ModulePool(self, name, entry, limit, make_worker=make_worker)
        return self.pools[key]

    def make_plan(self) -> tuple[Any, list[str], Plan]:
        """Scan the dataset and plan the run (what ``run`` starts with; ``mirdeck run --dry-run`` stops
        here): the scan, the modules in order, and the plan, which is kept as ``self.plan``."""
        scanned = scan(self.dataset)
        modules = resolve_modules(self.specs, self.options.only, self.options.skip)
        caches = self.stem_caches()
        for track in scanned.tracks:
            for cache in caches.values():
                stems.attach_cached(track, cache)
        self.plan = make_plan(scanned.tracks, self.specs, modules, self.options.overwrite,
                              {name: self.options_for(name) for name in modules}, stem_caches=caches)
        return scanned, modules, self.plan

    def _check_free_vram(self) -> None:
        """Lower the VRAM budget to what the profile's GPU has free now (``tui.run.vram``)."""
        if self.profile.device == "cpu" or self.vram_budget_gb <= 0:
            return
        from tui.gpu import open_probe
        from tui.run.vram import device_index, effective_budget

        try:
            probe = (self.gpu_probe or open_probe)()
        except Exception:  # no reading is no reason to stop a run
            return
        try:
            snapshot = probe.read()
        except Exception:
            return
        finally:
            probe.close()
        budget, warning = effective_budget(self.vram_budget_gb, snapshot,
                                           device_index({**os.environ, **self.profile.profile_env()}))
        if warning:
            self.vram_budget_gb = budget
            self.emit(ev.Warning(message=warning))

    def passes(self, modules: list[str]) -> list[list[str]]:
        """Split modules into sweeps whose GPU models fit the VRAM budget together.

        Usually one sweep; a GPU module that does not fit beside the others gets a later sweep
        (its tracks are then decoded again: the price of not holding every model at once).
        """
        budget = self.vram_budget_gb
        gpu = [m for m in modules if self.specs[m].device == "gpu" and self.profile.device != "cpu"]
        if budget <= 0 or sum(self.specs[m].vram_gb for m in gpu) <= budget:
            return [modules]
        sweeps: list[list[str]] = [[m for m in modules if m not in gpu]]
        used = 0.0
        for name in gpu:
            need = self.specs[name].vram_gb
            if used + need <= budget or used == 0:
                sweeps[0].append(name)
                used += need
            else:
                placed = False
                for sweep in sweeps[1:]:
                    if sum(self.specs[m].vram_gb for m in sweep) + need <= budget:
                        sweep.append(name)
                        placed = True
                        break
                if not placed:
                    sweeps.append([name])
        return [[m for m in modules if m in sweep] for sweep in sweeps]

    # -- the run -------------------------------------------------------------------------------
    async def run(self) -> dict[str, ModuleStats]:
        started = time.perf_counter()
        self._cpu_slots = asyncio.Semaphore(self.jobs)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        workers_log = self._workers_log = open(self.log_dir / "workers.log", "a", encoding="utf-8")
        # Audio decoded by runs that were killed (SIGKILL skips every clean-up) stays in RAM
        # until someone removes it: the runs whose engine is gone are removed here.
        stale = scratch_dirs.remove_stale(self.scratch.parent)
        scratch_dirs.create(self.scratch)
        status_task: asyncio.Task[None] | None = None
        try:
            if self.options.cluster and self.cluster is None:
                self.connect_cluster()  # in the main thread, where Ray wants its driver; nothing else runs yet
            if self.cluster is not None:
                status_task = asyncio.create_task(self._node_status_loop())
            scanned, modules, plan = self.make_plan()
            planned = plan.planned()
            for name in modules:
                self.stats[name] = ModuleStats(planned=planned[name], skipped=plan.skipped[name],
                                               not_applicable=plan.not_applicable[name])
            self.emit(ev.RunStarted(dataset=str(self.dataset), profile=self.profile.name, modules=modules,
                                    tracks=len(scanned.tracks), planned=dict(planned),
                                    skipped=dict(plan.skipped), log_dir=str(self.log_dir),
                                    scan_problems=scanned.problems + plan.problems,
                                    not_applicable={m: dict(c) for m, c in plan.not_applicable_reasons.items()}))
            if stale:
                freed = sum(r.bytes for r in stale) / 2 ** 20
                self.emit(ev.Warning(message=f"removed {len(stale)} decoded-audio folder(s) of runs that were "
                                             f"killed ({freed:,.0f} MiB in {self.scratch.parent}): "
                                             + ", ".join(r.folder.name for r in stale)))
            for name in modules:
                if plan.skipped[name]:
                    self.emit(ev.ModuleSkipped(module=name, count=plan.skipped[name]))
            if self.cluster is None and any(plan.planned()[m] for m in modules if self.specs[m].device == "gpu"):
                self._check_free_vram()
            for sweep in self.passes(modules):
                await self._sweep(plan, sweep)
                if self._stopping:
                    break
        finally:
            if status_task is not None:
                status_task.cancel()
            await self._close_pools()
            shutil.rmtree(self.scratch, ignore_errors=True)
            if self.cluster is not None:
                try:
                    await asyncio.gather(*(self.cluster.remove_on(node, str(self.scratch))
                                           for node in self.cluster.alive_nodes()))
                    await self._emit_node_status()
                except Exception as exc:  # the cluster itself is gone: the run's end must still be told
                    self.emit(ev.Warning(message=f"cluster unreachable at the end of the run: {exc!r}"))
                finally:
                    self.cluster.disconnect()
                    self.cluster = None
            self.emit(ev.RunFinished(stopped=self._stopping, wall_seconds=round(time.perf_counter() - started, 3),
                                     summary={n: s.to_dict() for n, s in self.stats.items()},
                                     left=self.left()))
            workers_log.close()
            self._workers_log = None
        return self.stats

    async def _node_status_loop(self) -> None:
        while True:
            try:
                await self._emit_node_status()
            except Exception as exc:  # a status that cannot be had now is tried again later
                self.emit(ev.Warning(message=f"node status unavailable: {exc!r}"))
            await asyncio.sleep(NODE_STATUS_EVERY_S)

    async def _emit_node_status(self) -> None:
        from tui.cluster.ray_cluster import status_of

        cluster = self.cluster
        await asyncio.to_thread(cluster.refresh)
        nodes = list(cluster.nodes.values())
        facts = await asyncio.gather(*(cluster.facts(n) if n.alive else asyncio.sleep(0) for n in nodes))
        for node, fact in zip(nodes, facts):
            self.emit(ev.NodeStatus(**status_of(node, fact, cluster.driver_node)))

    def left(self) -> dict[str, list[str]]:
        """Track -> planned modules that did not run on it (neither a result nor a failure)."""
        if self.plan is None:
            return {}
        left: dict[str, list[str]] = {}
        for track_plan in self.plan.tracks:
            track_id = self._track_id(track_plan)
            missing = [m for m in track_plan.modules if (track_id, m) not in self._settled]
            if missing:
                left[track_id] = missing
        return left

    def exit_code(self) -> int:
        """After ``run``: 3 when a stop left planned work undone, else 1 when anything failed."""
        left = self.left()
        if self._stopping and left:
            return EXIT_STOPPED
        failed = any(s.failed for s in self.stats.values())
        return EXIT_FAILURES if failed or left else EXIT_OK

    def _halted(self, attempt: int = 1) -> bool:
        """Whether a request must not be sent now: never after an immediate stop, and after a
        graceful one only the retry of a request a worker was already computing (it crashed)."""
        return self._aborting or (self._stopping and attempt == 1)

    async def _close_pools(self) -> None:
        pools, self.pools = list(self.pools.values()), {}
        await asyncio.gather(*(pool.close() for pool in pools))
        for pool in pools:  # anything still alive (killed mid-request) is reaped here
            for worker in list(pool.workers):
                worker.kill()
                await worker.stop(grace=1)

    async def _probe_longest(self, plan: Plan, modules: list[str]) -> None:
        """For modules sized by the run's longest track: the longest planned mix of each, from the
        files' headers (one request to the decode worker), before any track is decoded."""
        sized = [m for m in modules if self.specs[m].sized_by_longest_track]
        if not sized:
            return
        paths = {self._track_id(tp): str(tp.track.mix) for tp in plan.tracks if set(sized) & set(tp.modules)}
        request = protocol.request("(probe)#decode", track={"folder": str(self.dataset), "name": "(probe)"},
                                   sources={}, options={"probe": paths})
        outcome = await self._call("decode", "(probe)", request, DECODE_TIMEOUT_S, cpu=True)
        durations = outcome.features.get("durations", {}) if outcome.ok else {}
        for name in sized:
            known = [d for tp in plan.tracks if name in tp.modules
                     if isinstance(d := durations.get(self._track_id(tp)), (int, float)) and d > 0]
            self.longest_mix[name] = max(known) if known else None

    async def _sweep(self, plan: Plan, modules: list[str]) -> None:
        await self._probe_longest(plan, modules)
        batching = [m for m in modules if self.tracks_per_call(m, sweep=modules) > 1]
        self._yet_to_submit = {m: sum(1 for tp in plan.tracks if m in tp.modules) for m in batching}
        # Enough tracks decoded ahead that the next call's tracks are ready when a worker frees up.
        in_flight = asyncio.Semaphore(max(2, self.jobs * 2, *(2 * self.tracks_per_call(m) for m in batching)))
        tasks: set[asyncio.Task[None]] = set()
        for index, track_plan in enumerate(plan.tracks):
            chosen = [m for m in track_plan.modules if m in modules]
            if not chosen:
                continue
            await self._unpaused.wait()
            await in_flight.acquire()
            if self._stopping:
                in_flight.release()
                break
            task = asyncio.create_task(self._track_guarded(index, track_plan, chosen))
            tasks.add(task)

            def finished(done: asyncio.Task[None]) -> None:
                tasks.discard(done)
                in_flight.release()

            task.add_done_callback(finished)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=False)
        self._yet_to_submit = {}
        # Workers of this sweep's models are no longer needed: free their memory for the next.
        for key in [k for k, pool in self.pools.items() if pool.name in modules]:
            await self.pools.pop(key).close()

    @staticmethod
    def _track_message(track_plan: TrackPlan) -> dict[str, str]:
        return {"folder": str(track_plan.track.folder), "name": track_plan.track.name}

    def _track_id(self, track_plan: TrackPlan) -> str:
        try:
            return str(track_plan.track.folder.relative_to(self.dataset))
        except ValueError:
            return str(track_plan.track.folder)

    async def _track_guarded(self, index: int, track_plan: TrackPlan, modules: list[str]) -> None:
        try:
            await self._track(index, track_plan, modules)
        except Exception as exc:  # an engine bug on one track must not end the run silently
            import traceback

            self.emit(ev.Warning(message=f"engine error on {self._track_id(track_plan)}: {exc!r}\n"
                                         + traceback.format_exc(), track=self._track_id(track_plan)))

    async def _track(self, index: int, track_plan: TrackPlan, modules: list[str]) -> None:
        track_id = self._track_id(track_plan)
        self.emit(ev.TrackStarted(track=track_id, modules=modules))
        scratch = self.scratch / f"{index:06d}"
        loop = asyncio.get_running_loop()
        outcomes: dict[str, asyncio.Future[Outcome]] = {m: loop.create_future() for m in modules}
        to_run = list(modules)
        sources: dict[str, Any] = {}
        for attempt in range(1, NODE_LOST_RETRIES + 2):
            separated: dict[str, asyncio.Task[dict[str, Any]]] = {}
            # On a cluster the decode and every module of the track run on one node: its audio
            # never crosses the network. A node lost mid-track loses only what had not answered.
            node = self.cluster.pick() if self.cluster is not None else None
            if node is not None:
                node.in_flight += 1
            try:
                sources, decode_errors = await self._decode(track_id, track_plan, to_run, scratch, node)
                await asyncio.gather(*(self._module(track_id, track_plan, name, sources, decode_errors, outcomes,
                                                    separated, scratch, node) for name in to_run))
            except NodeLostDuringDecode:
                pass
            finally:
                if node is None:
                    shutil.rmtree(scratch, ignore_errors=True)
                else:
                    node.in_flight -= 1
                    await self.cluster.remove_on(node, str(scratch))
            lost = [m for m in to_run if not outcomes[m].done() or outcomes[m].result().kind == NODE_LOST]
            if not lost:
                if node is not None:
                    node.done += 1
                break
            if attempt > NODE_LOST_RETRIES:
                for name in lost:
                    result = await self._record(track_id, track_plan.track.folder, name, Outcome(
                        False, kind=CRASH, message=f"{name} on {track_id}: lost with {attempt} cluster nodes"))
                    self._settled.add((track_id, name))
                    outcomes[name] = loop.create_future()
                    outcomes[name].set_result(result)
                break
            self.emit(ev.Warning(message=f"node {node.short if node else '?'} was lost with {track_id} in flight; "
                                         f"running {', '.join(lost)} again on another node", track=track_id))
            for name in lost:
                outcomes[name] = loop.create_future()
            to_run = lost
        ok = [m for m in modules if outcomes[m].done() and outcomes[m].result().ok]
        not_run = [m for m in modules if outcomes[m].done() and outcomes[m].result().kind == STOPPED]
        failed = [m for m in modules if m not in ok and m not in not_run]
        duration = sources.get("mix", {}).get("frames", 0) / max(1, sources.get("mix", {}).get("sample_rate", 1))
        self.emit(ev.TrackFinished(track=track_id, ok=ok, failed=failed, audio_seconds=round(duration, 3),
                                   not_run=not_run))

    async def _decode(self, track_id: str, track_plan: TrackPlan, modules: list[str], scratch: Path,
                      node: Any = None, files: dict[str, Path] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Decode what ``modules`` read of this track (of ``files`` when given: stems written in this
        run) once, at every rate they need."""
        wanted: dict[str, set[int | None]]
        if files is None:
            wanted = TrackPlan(track_plan.track, modules, track_plan.info).needs(self.specs)
            files = track_plan.track.files()
        else:
            wanted = {}
            for name in modules:
                for need in self.specs[name].audio:
                    if need.source in files:
                        wanted.setdefault(need.source, set()).add(need.sample_rate)
        if not wanted:
            return {}, {}
        job = {source: {"path": str(files[source]),
                        "rates": sorted(("native" if r is None else r for r in rates), key=str)}
               for source, rates in wanted.items()}
        began = time.perf_counter()
        request = protocol.request(f"{track_id}#decode", track=self._track_message(track_plan), sources={},
                                   options={"decode": job, "cache_dir": str(scratch)})
        outcome = await self._call("decode", track_id, request, DECODE_TIMEOUT_S, cpu=True,
                                   on_started=lambda pid: self.emit(ev.ModuleStarted(
                                       track=track_id, module="decode", worker_pid=pid)), node=node)
        if outcome.kind == NODE_LOST:
            raise NodeLostDuringDecode(outcome.message)
        if not outcome.ok:
            message = outcome.message or "decoding failed"
            return {}, {source: {"kind": outcome.kind or INTERNAL, "message": message} for source in job}
        decoded = outcome.features.get("sources", {})
        errors = outcome.features.get("errors", {})
        self.emit(ev.TrackDecoded(track=track_id, sources={s: list(i["pcm"]) for s, i in decoded.items()},
                                  wall_seconds=round(time.perf_counter() - began, 4),
                                  errors={s: e["message"] for s, e in errors.items()}))
        return decoded, errors

    async def _call(self, name: str, track_id: str, message: dict[str, Any], timeout: float, *, cpu: bool,
                    on_progress: Callable[[dict[str, Any]], None] | None = None,
                    on_started: Callable[[int], None] | None = None, node: Any = None,
                    first_attempt: int = 1) -> Outcome:
        """One request with the engine's failure policy: a crash or hang is retried once on a
        fresh worker; an error the backend reports is final. On a cluster, a lost node ends
        the request with NODE_LOST: the track goes to another node. ``first_attempt`` 2: this is
        already the retry (of a call of several tracks that crashed)."""
        pool = self._pool(name, node)
        last = Outcome(False, kind=INTERNAL, message="not run")
        for attempt in (1, 2)[first_attempt - 1:]:
            if self._halted(attempt):
                return Outcome(False, kind=STOPPED, message="run stopped")
            try:
                worker = await pool.acquire()
            except ModuleUnavailable as exc:
                return Outcome(False, kind=exc.kind, message=str(exc))
            except NodeLost as exc:
                return Outcome(False, kind=NODE_LOST, message=str(exc))
            if self._halted(attempt):  # a stop came while this request waited for a worker
                await pool.release(worker)
                return Outcome(False, kind=STOPPED, message="run stopped")
            slot = (self._cpu_slots if node is None else node.slots) if cpu else None
            if slot:
                await slot.acquire()
            try:
                await self._unpaused.wait()  # pause holds work that has not been sent yet
                if self._halted(attempt):
                    await pool.release(worker)
                    return Outcome(False, kind=STOPPED, message="run stopped")
                if on_started:
                    on_started(worker.pid)
                reply = await worker.call(message, timeout, on_progress)
            except (WorkerDied, WorkerTimeout) as exc:
                kind = TIMEOUT if isinstance(exc, WorkerTimeout) else CRASH
                if isinstance(exc, NodeLost):
                    await pool.retire(worker, "node_lost")
                    return Outcome(False, kind=NODE_LOST, message=str(exc))
                await pool.retire(worker, "killed" if kind == TIMEOUT else "crash")
                if self._aborting:
                    return Outcome(False, kind=STOPPED, message="run stopped")
                last = Outcome(False, kind=kind, message=f"{name} on {track_id}: {exc}")
                if attempt == 1:
                    self.emit(ev.ModuleFailed(track=track_id, module=name, kind=kind,
                                              message=last.message + "; retrying on a fresh worker",
                                              attempt=1))
                continue
            finally:
                if slot:
                    slot.release()
            await pool.release(worker)
            if reply["type"] == "result":
                return _result_outcome(reply)
            return Outcome(False, kind=reply.get("kind", INTERNAL), message=reply.get("message", ""))
        return last

    async def _separated_stems(self, track_id: str, track_plan: TrackPlan, provider: str,
                               outcome: Outcome, scratch: Path, node: Any = None) -> dict[str, Any]:
        """Decode the stems ``provider`` wrote on this track for the modules that read them."""
        written = {stem: Path(path) for stem, path in outcome.files.items() if stem in self.specs[provider].provides}
        readers = [m for m in track_plan.modules if set(self.specs[m].stems_read()) & set(written)]
        decoded, errors = await self._decode(track_id, track_plan, readers, scratch / provider, node, files=written)
        for stem, err in errors.items():
            self.emit(ev.Warning(message=f"{track_id}: the {stem} stem {provider} wrote cannot be decoded: "
                                         f"{err['message']}", track=track_id))
        return decoded

    async def _stems_from_providers(self, track_id: str, track_plan: TrackPlan, spec: BackendSpec,
                                    outcomes: dict[str, asyncio.Future[Outcome]],
                                    separated: dict[str, asyncio.Task[dict[str, Any]]],
                                    scratch: Path, node: Any = None) -> dict[str, Any]:
        """The stems written in this run that ``spec`` reads, decoded (waits for their providers)."""
        waits = sorted({provider for stem, provider in track_plan.coming.items()
                        if stem in spec.stems_read() and provider in outcomes})
        found: dict[str, Any] = {}
        for provider in waits:
            outcome = await outcomes[provider]
            if not outcome.ok:
                continue  # the reader goes on with the stems the track had; the failure is recorded
            if provider not in separated:
                separated[provider] = asyncio.create_task(
                    self._separated_stems(track_id, track_plan, provider, outcome, scratch, node))
            found.update(await asyncio.shield(separated[provider]))
        return found

    def _provider_options(self, track_plan: TrackPlan, name: str) -> dict[str, Any]:
        """What the engine tells a stem provider on top of the user's options: which stems to write
        where, and which of those files it may replace (only its own, with ``--overwrite``)."""
        outputs = track_plan.stem_outputs.get(name, {})
        return {"write_stems": {stem: str(path) for stem, path in outputs.items()},
                "replace_stems": sorted(s for s in outputs if s in track_plan.track.stems)}

    async def _module(self, track_id: str, track_plan: TrackPlan, name: str, sources: dict[str, Any],
                      decode_errors: dict[str, Any], outcomes: dict[str, asyncio.Future[Outcome]],
                      separated: dict[str, asyncio.Task[dict[str, Any]]] | None = None,
                      scratch: Path | None = None, node: Any = None) -> None:
        spec = self.specs[name]
        folder = track_plan.track.folder
        result = Outcome(False)
        stem_origins: dict[str, str] = {}
        submitted = False
        try:
            inputs: dict[str, Any] = {}
            for dep in spec.requires:
                if dep in outcomes:
                    dep_outcome = await outcomes[dep]
                    if dep_outcome.kind in (STOPPED, NODE_LOST):
                        result = dep_outcome
                        return
                    if not dep_outcome.ok:
                        result = Outcome(False, kind=BAD_INPUT if dep_outcome.kind == BAD_INPUT else INTERNAL,
                                         message=f"needs {dep}, which failed on this track: {dep_outcome.message}")
                        return
                    inputs[dep] = {"features": dep_outcome.features, "files": dep_outcome.files}
                else:
                    info = track_plan.info
                    prov = info.get(store.PROVENANCE_KEY, {}).get(dep, {})
                    inputs[dep] = {"features": {k: v for k, v in info.items() if self.specs[dep].produces(k)},
                                   "files": prov.get("files", {})}
            needed = {need.source for need in spec.audio}
            for source in sorted(needed):
                required = any(n.required for n in spec.audio if n.source == source)
                if source in decode_errors and required:
                    err = decode_errors[source]
                    result = Outcome(False, kind=err["kind"], message=err["message"])
                    return
            request_sources = {s: sources[s] for s in needed if s in sources}
            if spec.stems_read() and separated is not None and scratch is not None:
                new = await self._stems_from_providers(track_id, track_plan, spec, outcomes, separated, scratch, node)
                request_sources.update({s: info for s, info in new.items() if s in needed})
                if spec.needs_one_of and not any(s in request_sources for s in spec.needs_one_of):
                    # It was planned for stems that did not come: say why, rather than "done" with nothing.
                    failed = [outcomes[p].result() for p in sorted(set(track_plan.coming.values()))
                              if p in outcomes and not outcomes[p].result().ok]
                    reason = failed[0] if failed else Outcome(False, kind=BAD_INPUT, message="no stem was written")
                    result = Outcome(False, kind=BAD_INPUT if reason.kind == BAD_INPUT else reason.kind,
                                     message=f"no {' or '.join(spec.needs_one_of)} stem: separation failed on "
                                             f"this track: {reason.message}")
                    return
                stem_origins = {s: stems.SEPARATED if s in new else track_plan.origins.get(s, stems.SUPPLIED)
                                for s in spec.stems_read() if s in request_sources}
            options = self.options_for(name)
            if spec.provides:
                options.update(self._provider_options(track_plan, name))
            await self._unpaused.wait()
            if self._halted():
                result = Outcome(False, kind=STOPPED, message="run stopped")
                return
            batched = self.tracks_per_call(name) > 1
            run: dict[str, Any] = {"longest_mix_seconds": self.longest_mix[name]} if self.longest_mix.get(name) else {}
            if batched:
                run["tracks_per_call"] = self.tracks_per_call(name)
            message = protocol.request(
                f"{track_id}#{name}", track=self._track_message(track_plan), sources=request_sources,
                inputs=inputs, options=options, run=run or None)
            submitted = batched
            result = await (self._batched if batched else self._call)(
                name, track_id, message, self.profile.timeout_for(name, spec.timeout_s),
                cpu=self._uses_cpu_slot(spec),
                on_progress=lambda m: self.emit(ev.ModuleProgress(track=track_id, module=name,
                                                                  fraction=m.get("fraction", 0.0),
                                                                  stage=m.get("stage", ""))),
                on_started=lambda pid: self.emit(ev.ModuleStarted(track=track_id, module=name, worker_pid=pid)),
                node=node)
        except Exception as exc:  # a bug in the engine must not lose the rest of the run
            result = Outcome(False, kind=INTERNAL, message=f"engine error on {name}: {exc!r}")
        finally:
            if not submitted:
                self._one_less_to_come(name)
            if result.kind not in (STOPPED, NODE_LOST):
                result = await self._record(track_id, folder, name, result, stem_origins, track_plan)
                self._settled.add((track_id, name))
            outcomes[name].set_result(result)

    def options_for(self, name: str) -> dict[str, Any]:
        """A module's per-run options: the profile's, then ``--set``."""
        return {**self.profile.options_for(name), **self.options.module_options.get(name, {})}

    def tracks_per_call(self, name: str, sweep: list[str] | None = None) -> int:
        """How many tracks one call to ``name``'s worker carries (1 for every module that does not
        batch tracks): sized once per run from its option and the VRAM budget (``tracks_per_call_for``),
        less what the other GPU models of its sweep (``passes``) hold beside it."""
        if name not in self._tracks_per_call:
            spec = self.specs[name]
            on_gpu = spec.device == "gpu" and self.profile.device != "cpu"
            budget = self.vram_budget_gb
            if budget > 0 and on_gpu:
                others = sum(self.specs[m].vram_gb for m in (sweep or [])
                             if m != name and self.specs[m].device == "gpu")
                budget = max(spec.vram_gb, budget - others)
            size, warning = tracks_per_call_for(spec, self.options_for(name), on_gpu=on_gpu, vram_budget_gb=budget)
            if warning:
                self.emit(ev.Warning(message=warning, module=name))
            self._tracks_per_call[name] = size
        return self._tracks_per_call[name]

    def _batcher(self, name: str, node: Any = None) -> TrackBatcher:
        key = name if node is None else f"{name}@{node.id}"
        if key not in self.batchers:
            async def send(batch: list[PendingTrack], sent: asyncio.Event) -> None:
                await self._call_batch(name, batch, sent, cpu=self._uses_cpu_slot(self.specs[name]), node=node)

            self.batchers[key] = TrackBatcher(self.tracks_per_call(name), send,
                                              expected=lambda: self._yet_to_submit.get(name, 0),
                                              stopping=lambda: self._stopping)
        return self.batchers[key]

    def _one_less_to_come(self, name: str) -> None:
        """A batching module's request of one track was submitted or will never be."""
        if name in self._yet_to_submit:
            self._yet_to_submit[name] = max(0, self._yet_to_submit[name] - 1)
            for key, batcher in self.batchers.items():
                if key == name or key.startswith(f"{name}@"):
                    batcher.poke()

    async def _batched(self, name: str, track_id: str, message: dict[str, Any], timeout: float, *, cpu: bool,
                       on_progress: Callable[[dict[str, Any]], None] | None = None,
                       on_started: Callable[[int], None] | None = None, node: Any = None) -> Outcome:
        """``_call`` for a module that batches tracks: the request waits in the module's batcher."""
        del cpu  # the batch's call takes the CPU slot, once
        pending = PendingTrack(track_id, message, timeout, on_progress, on_started)
        batcher = self._batcher(name, node)
        self._one_less_to_come(name)
        outcome: Outcome = await batcher.submit(pending)
        return outcome

    async def _call_batch(self, name: str, batch: list[PendingTrack], sent: asyncio.Event, *, cpu: bool,
                          node: Any = None) -> None:
        """One call carrying ``batch``'s tracks; every track's future gets its own outcome."""
        try:
            outcomes = await self._batch_outcomes(name, batch, sent, cpu=cpu, node=node)
        except Exception as exc:  # an engine bug must not leave tracks waiting forever
            outcomes = [Outcome(False, kind=INTERNAL, message=f"engine error on {name}: {exc!r}")] * len(batch)
        finally:
            sent.set()
        for pending, outcome in zip(batch, outcomes):
            if not pending.future.done():
                pending.future.set_result(outcome)

    async def _batch_outcomes(self, name: str, batch: list[PendingTrack], sent: asyncio.Event, *, cpu: bool,
                              node: Any = None) -> list[Outcome]:
        """``_call``'s failure policy for a call of several tracks: a crash or hang retries each of
        its tracks alone on a fresh worker (so a track that kills the worker fails alone); an error
        the backend reports for one track is that track's only."""
        pool = self._pool(name, node)
        count = len(batch)

        def every(outcome: Outcome) -> list[Outcome]:
            return [outcome] * count

        stopped = Outcome(False, kind=STOPPED, message="run stopped")
        if self._halted():
            return every(stopped)
        try:
            worker = await pool.acquire()
        except ModuleUnavailable as exc:
            return every(Outcome(False, kind=exc.kind, message=str(exc)))
        except NodeLost as exc:
            return every(Outcome(False, kind=NODE_LOST, message=str(exc)))
        if self._halted():
            await pool.release(worker)
            return every(stopped)
        slot = (self._cpu_slots if node is None else node.slots) if cpu else None
        if slot:
            await slot.acquire()
        failure: WorkerDied | WorkerTimeout | None = None
        try:
            await self._unpaused.wait()  # pause holds work that has not been sent yet
            if self._halted():
                await pool.release(worker)
                return every(stopped)
            sent.set()
            for pending in batch:
                if pending.on_started:
                    pending.on_started(worker.pid)
            by_id = {pending.message["id"]: pending for pending in batch}

            def progress(message: dict[str, Any]) -> None:
                target = by_id.get(message.get("id", ""))
                if target is not None and target.on_progress is not None:
                    target.on_progress(message)

            call = protocol.batch(f"{name}#call{pool.served}", [pending.message for pending in batch])
            reply = await worker.call(call, sum(pending.timeout for pending in batch), progress)
        except (WorkerDied, WorkerTimeout) as exc:
            failure = exc
        finally:
            if slot:
                slot.release()
        if failure is not None:
            kind = TIMEOUT if isinstance(failure, WorkerTimeout) else CRASH
            if isinstance(failure, NodeLost):
                await pool.retire(worker, "node_lost")
                return every(Outcome(False, kind=NODE_LOST, message=str(failure)))
            await pool.retire(worker, "killed" if kind == TIMEOUT else "crash")
            if self._aborting:
                return every(stopped)
            for pending in batch:
                self.emit(ev.ModuleFailed(track=pending.track_id, module=name, kind=kind,
                                          message=f"{name} on {pending.track_id}: {failure} (one call of {count} "
                                                  "tracks); retrying each track alone on a fresh worker", attempt=1))
            retried = await asyncio.gather(*(
                self._call(name, p.track_id, p.message, p.timeout, cpu=cpu, on_progress=p.on_progress,
                           on_started=p.on_started, node=node, first_attempt=2) for p in batch))
            return list(retried)
        await pool.release(worker)
        if reply["type"] == "error":  # the worker refused the call as a whole
            return every(Outcome(False, kind=reply.get("kind", INTERNAL), message=reply.get("message", "")))
        answers = {r.get("id"): r for r in reply.get("replies", [])} if reply["type"] == "results" else {}
        outcomes = []
        for pending in batch:
            answer = answers.get(pending.message["id"])
            if answer is None:
                outcomes.append(Outcome(False, kind=INTERNAL, message=f"{name} on {pending.track_id}: the "
                                        "worker's answer to the call had no reply for this track"))
            elif answer.get("type") == "result":
                outcomes.append(_result_outcome(answer))
            else:
                outcomes.append(Outcome(False, kind=answer.get("kind", INTERNAL), message=answer.get("message", "")))
        return outcomes

    def _stems_provenance(self, track_plan: TrackPlan, name: str, result: Outcome) -> dict[str, Any]:
        """A provider's record of every stem of the track: the files it wrote (with their size, so a
        file put in their place later is known as the user's) and those it found supplied."""
        track = track_plan.track
        record: dict[str, Any] = {}
        for stem, path in track.stems.items():
            if stem in self.specs[name].provides and stem not in result.files:
                origin = track_plan.origins.get(stem, stems.SUPPLIED)
                entry: dict[str, Any] = {"file": stems.recorded_name(track.folder, path), "origin": origin}
                if origin == stems.SEPARATED:
                    entry["bytes"] = stems._size(path)
                record[stem] = entry
        for stem, written in result.files.items():
            path = Path(written)
            record[stem] = {"file": stems.recorded_name(track.folder, path), "origin": stems.SEPARATED,
                            "bytes": stems._size(path)}
        return dict(sorted(record.items()))

    async def _record(self, track_id: str, folder: Path, name: str, result: Outcome,
                      stem_origins: dict[str, str] | None = None, track_plan: TrackPlan | None = None) -> Outcome:
        spec = self.specs[name]
        stats = self.stats[name]
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if result.ok:
            options = output_options(spec, self.options_for(name))
            # What produced these values (the options and their digest "done" compares) and which
            # keys they are (a later result without some of them removes those).
            prov = {**result.provenance, "status": "ok", "profile": self.profile.name,
                    "finished_at": now, "options": options, "options_hash": options_hash(options),
                    "keys": sorted(result.features)}
            if spec.provides and track_plan is not None:
                prov["stems"] = self._stems_provenance(track_plan, name, result)
            elif result.files:
                prov["files"] = {k: os.path.basename(v) for k, v in result.files.items()}
            if spec.stems_read():
                prov["stems"] = dict(sorted((stem_origins or {}).items()))
                if track_plan is not None:
                    # Which files these were, so that a stem separated again or replaced later is noticed.
                    paths = {stem: track_plan.stem_path(stem) for stem in prov["stems"]}
                    prov["stem_bytes"] = {stem: size for stem, path in sorted(paths.items())
                                          if path is not None and (size := stems._size(path)) is not None}
            try:
                outcome = await asyncio.to_thread(store.merge, folder, name, features=result.features,
                                                  provenance=prov)
            except (store.StoreError, ValueError, OSError) as exc:
                result = Outcome(False, kind=INTERNAL if isinstance(exc, ValueError) else STORE,
                                 message=f"{folder}: {exc}")
            else:
                if outcome.moved_aside:
                    self.emit(ev.StoreProblem(track=track_id, message=f"{outcome.reason}; moved aside to "
                                              f"{outcome.moved_aside.name} and started a fresh .INFO"))
                stats.done += 1
                stats.audio_seconds += result.audio_seconds
                stats.wall_seconds += result.wall_seconds
                stats.cpu_seconds += result.cpu_seconds
                rtf = prov.get("realtime_factor")
                stats.last_rtf = rtf
                tokens, decode_s = decode_counts(prov)
                self.emit(ev.ModuleFinished(track=track_id, module=name,
                                            audio_seconds=result.audio_seconds,
                                            wall_seconds=result.wall_seconds,
                                            realtime_factor=rtf or 0.0, keys=len(result.features),
                                            cpu_seconds=round(result.cpu_seconds, 4),
                                            generated_tokens=tokens, decode_seconds=decode_s))
                return result
        stats.failed += 1
        prov = {"version": spec.version, "status": "error", "profile": self.profile.name,
                "finished_at": now, "error": {"kind": result.kind, "message": result.message}}
        try:
            outcome = await asyncio.to_thread(store.merge, folder, name, features=None, provenance=prov)
            if outcome.moved_aside:
                self.emit(ev.StoreProblem(track=track_id, message=f"{outcome.reason}; moved aside to "
                                          f"{outcome.moved_aside.name}"))
        except (store.StoreError, OSError) as exc:
            self.emit(ev.StoreProblem(track=track_id, message=str(exc)))
        self.emit(ev.ModuleFailed(track=track_id, module=name, kind=result.kind, message=result.message,
                                  attempt=2 if result.kind in (CRASH, TIMEOUT) else 1))
        return result


def decode_counts(provenance: dict[str, Any]) -> tuple[int, float]:
    """(tokens generated, seconds decoding) of a text-generating module's result: its provenance's
    ``decode`` record (backends/flamingo/decode_rate.py); (0, 0.0) for a module without one or with
    a malformed one (a bad record costs the dashboard a figure, never the result)."""
    decode = provenance.get("decode")
    if not isinstance(decode, dict):
        return 0, 0.0
    try:
        return max(0, int(decode.get("generated_tokens") or 0)), max(0.0, float(decode.get("seconds") or 0.0))
    except (TypeError, ValueError):
        return 0, 0.0


def _result_outcome(reply: dict[str, Any]) -> Outcome:
    audio = float(reply.get("audio_seconds", 0.0))
    wall = float(reply.get("wall_seconds", 0.0))
    cpu = float(reply.get("cpu_seconds", 0.0))
    rtf = round(audio / wall, 2) if wall > 0 else None
    timing = {"elapsed_s": round(wall, 4), "audio_seconds": round(audio, 3), "realtime_factor": rtf}
    if cpu > 0:  # realtime per core: audio seconds per CPU second, what wall time hides under load
        timing.update(cpu_seconds=round(cpu, 4), realtime_per_core=round(audio / cpu, 2))
    return Outcome(True, features=reply.get("features", {}), files=reply.get("files", {}),
                   audio_seconds=audio, wall_seconds=wall, cpu_seconds=cpu,
                   provenance={**reply.get("provenance", {}), **timing})
