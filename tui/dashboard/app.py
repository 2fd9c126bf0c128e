"""The Textual dashboard. The engine runs as a task in the app's own asyncio loop; its events
feed a ``RunView`` that the screens redraw from at ``refresh_hz``. Controls call the engine's
``stop``/``pause``/``resume``; nothing here decides what to extract.

Entry points: ``run_dashboard(engine)`` (``mirdeck run``/``demo`` on a terminal: straight to the
live run) and ``run_setup(dataset)`` (``mirdeck dashboard``: the set-up screen first).
"""
from __future__ import annotations

import asyncio
import signal
import time
import traceback
from pathlib import Path
from typing import Callable, Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding

from tui.dashboard.runview import HostReading, RunView

END_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
QUIT_GRACE_S = 15.0  # how long quitting waits for a graceful stop before killing the workers


class MirdeckApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "mirdeck"
    BINDINGS = [
        Binding("ctrl+c", "request_quit", "quit", show=False, priority=True),
        Binding("question_mark", "help", "help", show=False),
        Binding("d", "detach", "detach", show=False),
    ]

    def __init__(self, *, engine=None, dataset: Path | None = None, profile: str | None = None,
                 view: RunView | None = None, probe=None,
                 host_reader: Callable[[Iterable[int]], HostReading] | None = None,
                 clock: Callable[[], float] = time.time, refresh_hz: float = 4.0, probe_interval: float = 1.0,
                 specs=None, ab_options=None):
        super().__init__()
        self.engine = engine
        self.dataset = Path(engine.dataset) if engine is not None else (Path(dataset) if dataset else None)
        self.profile_name = profile
        self.view = view or RunView(clock=clock)
        self.clock = clock
        self.refresh_hz = refresh_hz
        self.probe_interval = probe_interval
        self.probe = probe
        self.host_reader = host_reader or read_host
        self._specs = specs
        self.run_task: asyncio.Task | None = None
        self.ab_options = ab_options  # tui.ab.run.ABOptions for an A/B started here (tests: stand-in models)
        self.ab_progress = None
        self.ab_task: asyncio.Task | None = None
        self.pending_ab: tuple | None = None  # (dataset, profile, tracks) to compare after the run
        self.quit_when_done = False
        self.exit_code = 0
        self.detach_requested = False
        self.handed_over = None  # the service's record once the run was handed to one (the detach key)

    @property
    def specs(self):
        if self._specs is None:
            from backends.registry import all_specs

            self._specs = all_specs()
        return self._specs

    # -- screens ----------------------------------------------------------------------------------
    def on_mount(self) -> None:
        from tui.dashboard.screens.live import LiveRunScreen
        from tui.dashboard.screens.setup import SetupScreen

        self._catch_end_signals()
        if self.engine is not None:
            self.push_screen(LiveRunScreen())
            self.start_engine(self.engine)
        elif self.view.started_at is not None:  # a recorded view (screenshots, replays)
            self.push_screen(LiveRunScreen())
        else:
            self.push_screen(SetupScreen(self.dataset, self.profile_name))

    def start_from_setup(self, dataset: Path, profile, *, only: list[str], overwrite: list[str],
                         ab_tracks: int = 0) -> None:
        """Start the run; with ``ab_tracks`` the Flamingo A/B on that many tracks follows it (or
        starts at once when no other module is ticked)."""
        from tui.dashboard.screens.live import LiveRunScreen
        from tui.run.engine import Engine, RunOptions

        self.pending_ab = (Path(dataset), profile, ab_tracks) if ab_tracks else None
        if not only and self.pending_ab:
            self.dataset = Path(dataset)
            self.start_pending_ab(replace=True)
            return
        from tui.service.registry import DatasetBusy, DatasetLock
        from tui.service.server import RunServer

        try:  # one run per dataset, however each was started
            lock = DatasetLock(Path(dataset)).acquire()
        except DatasetBusy as busy:
            self.notify(f"{busy}: watch it with 'mirdeck attach {dataset}'", severity="error", timeout=10)
            return
        engine = Engine(dataset, profile, RunOptions(only=only, overwrite=overwrite), specs=self.specs)
        engine.subscribe(RunServer(engine, lock))  # attachable, and the lock goes when the run ends
        self.dataset = engine.dataset
        self.view = RunView(clock=self.clock)
        self.switch_screen(LiveRunScreen())
        self.start_engine(engine)

    def start_engine(self, engine) -> None:
        from tui.run.runlog import RunLog

        self.engine = engine
        engine.subscribe(self.view)
        engine.subscribe(RunLog(engine.log_dir))
        self.run_task = asyncio.create_task(self._run_engine())

    async def _run_engine(self) -> None:
        try:
            await self.engine.run()
            self.exit_code = self.engine.exit_code()
        except Exception as exc:  # the screen stays up and says what happened
            self.exit_code = 2
            self.view.fatal = repr(exc)
            self.view.add_log("error", "", "engine error: " + "".join(traceback.format_exception(exc)).strip())
            if self.view.finished_at is None:
                self.view.finished_at = self.clock()
        finally:
            if self.engine.plan is not None:
                self.view.tracks_total = len(self.engine.plan.tracks)
            self.view.version += 1
        if self.detach_requested and not self.view.fatal:
            await self._hand_over()
            return
        if self.pending_ab and not self.view.stopped and not self.view.fatal and not self.quit_when_done:
            self.start_pending_ab()
            return
        if self.quit_when_done:
            self.exit(self.exit_code)

    def _catch_end_signals(self) -> None:
        """SIGTERM (kill, a service manager) and SIGHUP (the ssh window closed) would end Python
        at once and leave the terminal in the dashboard's screen and raw mode until ``reset``.
        Here they end the app instead: the workers are killed, the terminal is given back."""
        loop = asyncio.get_running_loop()
        for sig in END_SIGNALS:
            try:
                loop.add_signal_handler(sig, self.end_by_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread (tests)
                pass

    def end_by_signal(self, sig: int) -> None:
        self.exit_code = 128 + sig
        if self.running:
            self.engine.stop(immediate=True)
            self.view.stopping = "immediate"
        if self.ab_running:
            self.ab_progress.stop.set()
        self.exit(self.exit_code)

    # -- A/B ----------------------------------------------------------------------------------------
    def start_pending_ab(self, *, replace: bool = False) -> None:
        """Run both Flamingo back ends on tracks spread over the dataset, in a thread (``run_ab``
        drives its own engines), and show the A/B view with its progress."""
        from tui.ab.progress import ABProgress, evenly_spaced
        from tui.ab.reports import dataset_ab_dir
        from tui.ab.run import ABOptions
        from tui.dashboard.screens.ab import ABScreen
        from tui.run.dataset import scan

        dataset, profile, count = self.pending_ab
        self.pending_ab = None
        tracks = evenly_spaced(scan(dataset).tracks, count)
        out = dataset_ab_dir(dataset) / time.strftime("%Y%m%d-%H%M%S")
        self.ab_progress = progress = ABProgress(len(tracks), out)
        if not tracks:
            progress.error, progress.finished = f"{dataset}: no tracks to compare", time.time()
        else:
            self.ab_task = asyncio.create_task(self._run_ab(tracks, profile, out, progress,
                                                            self.ab_options or ABOptions()))
        (self.switch_screen if replace else self.push_screen)(ABScreen(progress=progress))

    async def _run_ab(self, tracks, profile, out: Path, progress, options) -> None:
        from tui.ab.run import run_ab

        try:
            await asyncio.to_thread(run_ab, tracks, profile, out, options, progress, progress.stop)
        except Exception as exc:  # the view says what went wrong; the dashboard stays up
            progress.error = f"{type(exc).__name__}: {exc}"
        finally:
            progress.finished = time.time()
        if self.quit_when_done:
            self.exit(self.exit_code)

    @property
    def running(self) -> bool:
        return self.run_task is not None and not self.run_task.done()

    @property
    def ab_running(self) -> bool:
        return self.ab_task is not None and not self.ab_task.done()

    # -- probes (called from a thread by the live screen) -------------------------------------------
    def read_probes(self, pids: list[int]):
        if self.probe is None:
            from tui.gpu import CachedProbe, open_probe

            self.probe = CachedProbe(open_probe(), ttl=0.5)
        from tui.gpu.families import credit_to_roots, process_families

        # A worker's helpers (flamingo_gguf's llama-server) hold its GPU memory: read them too.
        families = process_families(pids)
        gpu = credit_to_roots(self.probe.read([p for members in families.values() for p in members]), families)
        return gpu, self.host_reader(pids)

    def read_features(self, track_id: str) -> dict:
        from tui.run.store import read_info_lenient

        if self.dataset is None:
            return {}
        folder = self.dataset / track_id
        info, _ = read_info_lenient(folder / f"{folder.name}.INFO")
        return {k: v for k, v in info.items() if not k.startswith("_")}

    # -- controls ---------------------------------------------------------------------------------
    def action_stop_graceful(self) -> None:
        if not self.running:
            self.notify("no run in progress")
            return
        self.engine.stop()
        self.view.stopping = "graceful"
        self.view.set_paused(False)
        self.view.add_log("info", "", "stop requested: what the workers compute now finishes, nothing new starts")

    def action_stop_now(self) -> None:
        if not self.running:
            self.notify("no run in progress")
            return
        self.engine.stop(immediate=True)
        self.view.stopping = "immediate"
        self.view.set_paused(False)
        self.view.add_log("warning", "", "immediate stop: workers killed; tracks in flight stay undone")

    def action_toggle_pause(self) -> None:
        if not self.running:
            return
        if self.engine.paused:
            self.engine.resume()
            self.view.set_paused(False)
            self.view.add_log("info", "", "resumed")
        else:
            self.engine.pause()
            self.view.set_paused(True)
            self.view.add_log("info", "", "paused: requests in flight finish, no new ones start")

    def action_detach(self) -> None:
        """Hand the run to a background service (tui/service/handover.py) and leave."""
        from tui.service.handover import CannotHandOver, check

        if not self.running or self.detach_requested:
            self.notify("no run in progress" if not self.running else "detaching already")
            return
        try:
            check(self.engine)
        except CannotHandOver as exc:
            self.notify(str(exc), severity="warning", timeout=10)
            return
        self.detach_requested = True
        self.action_stop_graceful()
        self.view.add_log("info", "", "detaching: the tracks in flight finish here, then a background service "
                                      "goes on with the rest")

    async def _hand_over(self) -> None:
        from tui.service.handover import hand_over

        try:
            self.handed_over = await hand_over(self.engine)
        except Exception as exc:  # the dashboard stays, and says why
            self.view.add_log("error", "", f"could not hand the run to a background service: {exc}")
            self.notify(f"detach failed: {exc}", severity="error", timeout=10)
            return
        self.exit(self.exit_code)

    def action_request_quit(self) -> None:
        if self.ab_running and not self.running:
            if self.quit_when_done:
                self.exit(self.exit_code)  # second press: on_unmount kills the A/B's workers
                return
            self.ab_progress.stop.set()
            self.quit_when_done = True
            self.notify("stopping the A/B (its workers are killed); press again to leave at once")
            return
        if not self.running:
            self.exit(self.exit_code)
            return
        if self.quit_when_done or self.view.stopping:
            self.action_stop_now()
        else:
            self.action_stop_graceful()
            self.notify("quitting after the tracks in flight; press again to stop now")
        self.quit_when_done = True

    def action_help(self) -> None:
        from tui.dashboard.screens.misc import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_ab(self) -> None:
        from tui.dashboard.screens.ab import ABScreen

        if not isinstance(self.screen, ABScreen):
            self.push_screen(ABScreen(progress=self.ab_progress))

    def action_dataset(self) -> None:
        from tui.dashboard.screens.dataset import DatasetScreen

        if self.dataset is None:
            self.notify("no dataset chosen yet")
            return
        if not isinstance(self.screen, DatasetScreen):
            self.push_screen(DatasetScreen(self.dataset))

    def action_track(self, track: str = "") -> None:
        from tui.dashboard.screens.track import TrackScreen
        from tui.run.dataset import scan

        if self.dataset is None:
            self.notify("no dataset chosen yet")
            return
        try:
            folders = [t.folder for t in scan(self.dataset).tracks]
        except FileNotFoundError as exc:
            self.notify(str(exc), severity="error")
            return
        self.push_screen(TrackScreen(folders, track))

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        if self.running:
            yield SystemCommand("Stop gracefully", "finish the tracks in flight, then stop", self.action_stop_graceful)
            yield SystemCommand("Stop now", "kill the workers at once", self.action_stop_now)
            yield SystemCommand("Pause / resume", "no new requests start while paused", self.action_toggle_pause)
            yield SystemCommand("Detach", "the run goes on in a background service; mirdeck attach comes back to it",
                                self.action_detach)
        if self.dataset is not None:
            yield SystemCommand("Open track detail", "the .INFO, provenance and errors of a track", self.action_track)
            yield SystemCommand("Dataset", "distributions and a sortable table of every track", self.action_dataset)
        yield SystemCommand("A/B view", "the two Flamingo back ends side by side", self.action_ab)
        yield SystemCommand("Keys", "every key of the dashboard", self.action_help)

    async def on_unmount(self) -> None:
        await self.shutdown_engine()

    async def shutdown_engine(self) -> None:
        """Never leave workers behind: a graceful stop gets a while, then everything is killed."""
        if self.ab_running:
            self.ab_progress.stop.set()
            await asyncio.wait({self.ab_task}, timeout=QUIT_GRACE_S)
        if not self.running:
            return
        if not self.engine._stopping:
            self.engine.stop(immediate=True)
        try:
            await asyncio.wait_for(asyncio.shield(self.run_task), QUIT_GRACE_S)
        except (asyncio.TimeoutError, Exception):
            self.engine.stop(immediate=True)
            await asyncio.wait({self.run_task}, timeout=5)


_cpu_primed = False


def read_host(pids: Iterable[int]) -> HostReading:
    """Whole-machine CPU % (since the previous call) and RAM, and each worker's resident memory."""
    global _cpu_primed
    import psutil

    memory = psutil.virtual_memory()
    rss = {}
    for pid in pids:
        try:
            rss[pid] = psutil.Process(pid).memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    cpu = psutil.cpu_percent(interval=None)
    if not _cpu_primed:  # psutil's first answer has no interval behind it: unknown, not 0 %
        _cpu_primed, cpu = True, None
    return HostReading(cpu_percent=cpu, ram_used=memory.total - memory.available,
                       ram_total=memory.total, worker_rss=rss)


def kill_leftover_workers(engine) -> None:
    for pool in list(getattr(engine, "pools", {}).values()):
        pool.kill_all()


def run_dashboard(engine, **kwargs) -> int:
    """Open the live-run screen on ``engine`` and return the run's exit code (0 ok, 1 failures)."""
    app = MirdeckApp(engine=engine, **kwargs)
    try:
        result = app.run()
    finally:
        kill_leftover_workers(engine)  # only reached with workers alive if the app itself crashed
    if app.view.finished_at is not None and not app.view.fatal:
        from rich.console import Console

        from tui.headless import print_left, summary_table

        summary = {n: {"done": r.done, "failed": r.failed, "skipped": r.skipped,
                       "not_applicable": r.not_applicable, "audio_seconds": r.audio_seconds,
                       "wall_seconds": r.wall_seconds, "realtime_factor": r.rtf,
                       "cpu_seconds": r.cpu_seconds, "realtime_per_core": r.realtime_per_core}
                   for n, r in app.view.modules.items()}
        try:
            console = Console()
            console.print(summary_table(summary, f"mirdeck run {'stopped' if app.view.stopped else 'finished'}"))
            if app.view.left:
                print_left(console, app.view.left, app.view.log_dir)
        except OSError:  # SIGHUP: the terminal is gone, the run log has it all
            pass
    if app.handed_over is not None:
        print(f"mirdeck: the run goes on in background service {app.handed_over.pid}; "
              f"watch it: mirdeck attach {app.handed_over.dataset}")
    return result if isinstance(result, int) else app.exit_code


def run_setup(dataset: Path | None = None, profile: str | None = None) -> int:
    """Open the set-up screen (``mirdeck dashboard [DATASET]``)."""
    app = MirdeckApp(dataset=dataset, profile=profile)
    try:
        result = app.run()
    finally:
        if app.engine is not None:
            kill_leftover_workers(app.engine)
    return result if isinstance(result, int) else app.exit_code
