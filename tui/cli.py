"""``mirdeck`` command line. Imports are lazy so ``mirdeck --help`` answers at once."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

DEFAULT_DEMO_DIR = "demo-dataset"


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _module_options(values: list[str] | None) -> dict[str, dict]:
    """``--set MODULE.OPTION=VALUE`` pairs as ``{module: {option: value}}``; VALUE is read as a
    TOML value (``0.2``, ``true``, ``["genre", "mood"]``) and kept as text if it is not one."""
    import tomllib

    options: dict[str, dict] = {}
    for item in values or []:
        name, sep, raw = item.partition("=")
        module, dot, option = name.strip().partition(".")
        if not sep or not dot or not module or not option:
            raise SystemExit(_fail(f"--set {item!r}: expected MODULE.OPTION=VALUE, e.g. essentia_tf.threshold=0.2"))
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        options.setdefault(module, {})[option] = value
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mirdeck",
        description="Run music feature extractors over a dataset (one folder per track) and write "
                    "one .INFO JSON file per track.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--profile", "-p", default=None,
                       help="environment profile (default: cpu); see 'mirdeck profiles'")
        p.add_argument("--only", action="append", metavar="MODULE[,MODULE]", help="run only these modules")
        p.add_argument("--skip", action="append", metavar="MODULE[,MODULE]", help="do not run these modules")
        p.add_argument("--overwrite", action="append", metavar="MODULE[,MODULE]",
                       help="recompute these modules even where done ('all' for every module)")
        p.add_argument("--jobs", "-j", type=int, default=None, help="parallel CPU jobs (default: profile, else cores)")
        p.add_argument("--log-dir", type=Path, default=None,
                       help="where the run log goes (default: DATASET/.mirdeck/runs/...)")
        p.add_argument("--headless", action="store_true", help="never open the dashboard, even on a terminal")
        p.add_argument("--cluster", default=None, metavar="ADDRESS",
                       help="run the workers on a Ray cluster: 'auto' (the cluster this machine is a node of), "
                            "HOST:PORT (its head's GCS) or ray://HOST:PORT (Ray Client); needs the 'ray' extra "
                            "and the dataset on storage every node mounts at the same path")
        p.add_argument("--verbose", "-v", action="store_true", help="print a line per finished track")
        p.add_argument("--set", action="append", dest="module_options", metavar="MODULE.OPTION=VALUE",
                       help="a module's option for this run, over the profile's "
                            "(e.g. essentia_tf.threshold=0.2, essentia_tf.heads='[\"genre\"]')")

    p = sub.add_parser("run", help="extract features for every track of a dataset")
    p.add_argument("dataset", type=Path)
    run_options(p)
    p.add_argument("--detach", "-d", action="store_true",
                   help="run in a background service that outlives this terminal; "
                        "watch it with 'mirdeck attach', 'mirdeck status' or 'mirdeck serve'")
    p.add_argument("--dry-run", "-n", action="store_true",
                   help="print what the run would do (per module: tracks to run, done, n/a and why; sweeps, "
                        "tracks per call, the VRAM budget) and start nothing")

    p = sub.add_parser("demo", help="synthesise the built-in demo dataset and run on it (the default job)")
    p.add_argument("--dir", type=Path, default=Path(DEFAULT_DEMO_DIR),
                   help=f"where to write it (default: ./{DEFAULT_DEMO_DIR})")
    p.add_argument("--no-run", action="store_true", help="only write the dataset")
    run_options(p)

    p = sub.add_parser("dashboard", help="open the dashboard's set-up screen: pick dataset, profile, modules; start")
    p.add_argument("dataset", type=Path, nargs="?", default=None)
    p.add_argument("--profile", "-p", default=None, help="profile selected at first")

    p = sub.add_parser("scan", help="list the tracks mirdeck finds in a dataset, and what it skips")
    p.add_argument("dataset", type=Path)

    p = sub.add_parser("organize", help="turn loose audio files into track folders (copies; never overwrites)")
    p.add_argument("source", type=Path)
    p.add_argument("dest", type=Path)
    p.add_argument("--move", action="store_true", help="move instead of copy")
    p.add_argument("--dry-run", action="store_true", help="show what would happen")

    p = sub.add_parser("profiles", help="list profiles, or show the effective environment of one")
    p.add_argument("name", nargs="?")
    p.add_argument("--backend", "-b", help="show the environment one backend's workers get")

    p = sub.add_parser("modules", help="list the extractors, their keys and needs")

    p = sub.add_parser("ab", help="compare the two Music Flamingo back ends (GGUF vs transformers) on tracks")
    p.add_argument("tracks", nargs="*", type=Path, help="track folders, or dataset folders (every track in them)")
    p.add_argument("--profile", "-p", default=None, help="environment profile (default: cpu)")
    p.add_argument("--out", type=Path, default=None, help="report folder (default: ./mirdeck-ab/<time>)")
    p.add_argument("--prompts", type=Path, default=None,
                   help="prompts file for both back ends (default: the shared one)")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--min-p", type=float, default=None)
    p.add_argument("--repeat-penalty", type=float, default=None)
    p.add_argument("--repeat-last-n", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--gguf-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option for flamingo_gguf only (quant, mode, model_file, ...)")
    p.add_argument("--hf-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an option for flamingo_hf only (model_dir, dtype, attn_implementation, ...)")
    p.add_argument("--winner", choices=["gguf", "hf"], default=None,
                   help="write this back end's answers into the tracks' .INFO (otherwise nothing is written there)")
    p.add_argument("--apply", type=Path, default=None, metavar="REPORT",
                   help="with --winner: write that back end's answers from an earlier A/B report folder "
                        "(no new comparison)")
    p.add_argument("--jobs", "-j", type=int, default=1)

    p = sub.add_parser("attach", help="open the dashboard on a run in progress (started with --detach, or in "
                                      "another terminal); leaving it never stops the run")
    p.add_argument("dataset", type=Path, nargs="?", default=None,
                   help="the run's dataset (default: the only run in progress)")
    p.add_argument("--headless", action="store_true", help="plain progress lines instead of the dashboard")
    p.add_argument("--jsonl", action="store_true",
                   help="print every event as one JSON object per line (the run so far first, then live)")
    p.add_argument("--verbose", "-v", action="store_true", help="headless: a line per finished track")

    p = sub.add_parser("stop", help="stop a run in progress from any terminal: what the workers are "
                                    "computing finishes, nothing new starts; says what was left")
    p.add_argument("dataset", type=Path, nargs="?", default=None,
                   help="the run's dataset (default: the only run in progress)")
    p.add_argument("--now", action="store_true",
                   help="stop at once: workers killed, their tracks left for the next run")
    p.add_argument("--no-wait", action="store_true", help="ask for the stop and return at once")

    p = sub.add_parser("status", help="list the runs in progress: dataset, progress, ETA (no dashboard)")
    p.add_argument("dataset", type=Path, nargs="?", default=None)
    p.add_argument("--json", action="store_true", help="one JSON object per run")

    p = sub.add_parser("serve", help="serve the dashboard of a run in progress to a web browser (textual-serve)")
    p.add_argument("dataset", type=Path, nargs="?", default=None,
                   help="the run's dataset (default: the only run in progress when a page opens)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--public", action="store_true",
                   help="allow an address other than loopback (plain HTTP: the printed link's token keeps out "
                        "who does not have it, not who can read the network)")
    p.add_argument("--public-url", default=None, metavar="URL",
                   help="the page's address as browsers reach it, when that is not the address they used "
                        "(a reverse proxy with TLS: https://host/path)")
    p.add_argument("--certfile", type=Path, default=None, metavar="PEM",
                   help="serve over HTTPS with this certificate (and its key, unless --keyfile gives it)")
    p.add_argument("--keyfile", type=Path, default=None, metavar="PEM", help="the certificate's private key")

    p = sub.add_parser("export", help="write the .INFO features in a trainer's format (see docs/exports.md)")
    p.add_argument("dataset", type=Path)
    p.add_argument("--to", required=True, dest="format",
                   choices=["audiocraft", "stable-audio", "jsonl", "parquet", "acestep"])
    p.add_argument("--out", type=Path, default=None, help="output folder (default: DATASET/.mirdeck/export/FORMAT)")
    p.add_argument("--template", type=Path, default=None,
                   help="prompt template (TOML: parts, separator); default: genres, moods, instruments, BPM, key")
    p.add_argument("--description-key", default=None,
                   help="the .INFO key AudioCraft's description comes from (default: music_flamingo_full)")
    p.add_argument("--provenance", action="store_true", help="jsonl/parquet: add each track's _mirdeck block")
    p.add_argument("--label-maps", action="store_true",
                   help="parquet: label dicts as map<string, double> (Hugging Face datasets cannot load maps)")
    p.add_argument("--shards", action="store_true", help="stable-audio: also write WebDataset shards (flac + json)")
    p.add_argument("--shard-size", type=int, default=1000, help="tracks per WebDataset shard (default 1000)")

    p = sub.add_parser("report", help="one self-contained HTML page about a dataset: coverage, distributions, outliers")
    p.add_argument("dataset", type=Path)
    p.add_argument("--out", type=Path, default=None, help="the page (default: DATASET/.mirdeck/report.html)")

    p = sub.add_parser("models", help="show installed models and how each is pinned; 'models fetch NAME...' "
                                      "downloads and verifies them; 'models verify [NAME...]' re-hashes installed ones")
    p.add_argument("action", nargs="?", choices=["list", "fetch", "verify"], default="list")
    p.add_argument("names", nargs="*")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from tui import __version__

        print(f"mirdeck {__version__}")
        return 0
    if not args.command:
        parser.print_help()
        return 0
    handler = COMMANDS[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


def _fail(message: str) -> int:
    print(f"mirdeck: {message}", file=sys.stderr)
    return 2


def _profile_and_options(args):
    """The run's profile, options and specs, or SystemExit(2) before anything is created when the
    request is wrong."""
    from backends.registry import RegistryError, all_specs
    from tui.run.engine import RunOptions
    from tui.run.plan import resolve_modules
    from tui.run.profiles import ProfileError, default_name, load

    try:
        profile = load(args.profile or default_name())
    except ProfileError as exc:
        raise SystemExit(_fail(str(exc)))
    only, skip = _split(args.only), _split(args.skip)
    module_options = _module_options(getattr(args, "module_options", None))
    specs = all_specs()
    try:  # check module names now, before a run folder or a worker exists
        modules = resolve_modules(specs, only, skip)
        for name in module_options:
            if name not in specs:
                raise RegistryError(f"unknown module {name!r} in --set; known modules: {', '.join(specs)}")
        for name in _split(args.overwrite):
            if name != "all" and name not in specs:
                raise RegistryError(f"unknown module {name!r} in --overwrite; known modules: {', '.join(specs)}")
    except RegistryError as exc:
        raise SystemExit(_fail(str(exc)))
    missing = {name: models for name, models in modules_missing_models(
        {n: {**profile.options_for(n), **module_options.get(n, {})} for n in modules}).items() if name in modules}
    if only and missing:
        # Asked for by name: running it would only fail every track, so refuse like an unknown name.
        lines = [f"{name}: model not installed; fetch it with: mirdeck models fetch {' '.join(models)}"
                 for name, models in missing.items()]
        raise SystemExit(_fail("\n  ".join(["cannot run the modules asked for:", *lines])))
    for name, models in missing.items():
        # The default set is what can run here: one line per module left out, with the way to add it.
        print(f"mirdeck: skipping {name}: model not installed (mirdeck models fetch {' '.join(models)})",
              file=sys.stderr)
        skip.append(name)
    while needing := [n for n in modules if n not in skip and set(specs[n].requires) & set(skip)]:
        for name in needing:
            print(f"mirdeck: skipping {name}: it requires a module that cannot run here", file=sys.stderr)
            skip.append(name)
    options = RunOptions(only=only, skip=skip, overwrite=_split(args.overwrite), jobs=args.jobs,
                         log_dir=args.log_dir, module_options=module_options,
                         cluster=getattr(args, "cluster", None))
    return profile, options, specs


def _run(dataset: Path, args) -> int:
    if not dataset.is_dir():
        return _fail(f"{dataset}: dataset folder does not exist")
    if getattr(args, "dry_run", False):
        return _dry_run(dataset, args)
    if getattr(args, "detach", False):
        return _detach(dataset, args)
    from tui.run.engine import Engine
    from tui.service.registry import DatasetBusy, DatasetLock
    from tui.service.server import RunServer

    profile, options, specs = _profile_and_options(args)
    try:  # one run per dataset: a second 'run' watches the first instead of doing its work again
        lock = DatasetLock(dataset).acquire()
    except DatasetBusy as busy:
        return _attach_instead(dataset, busy, args)
    server = None
    try:
        engine = Engine(dataset, profile, options, specs=specs)
        from tui.service.daemon import remove_stale_scratch

        remove_stale_scratch(engine.dataset, engine.run_id)  # PCM of killed runs on this dataset
        if options.cluster:
            from tui.cluster.ray_cluster import ClusterError

            try:  # refused before anything starts: no node may lack the dataset
                engine.connect_cluster()
            except ClusterError as exc:
                return _fail(str(exc))
        # Every run serves its event stream: 'mirdeck attach' can watch a run started in a terminal.
        server = RunServer(engine, lock)
        engine.subscribe(server)
        return _run_here(engine, args)
    finally:
        if server is not None:
            server.close()  # the socket goes, the lock is released
        lock.release()


def _dry_run(dataset: Path, args) -> int:
    from tui.dry_run import print_plan
    from tui.run.engine import Engine

    profile, options, specs = _profile_and_options(args)
    if options.cluster:
        print("mirdeck: --dry-run plans as on this machine; the cluster is not contacted", file=sys.stderr)
    print_plan(Engine(dataset, profile, options, specs=specs))
    return 0


def _run_here(engine, args) -> int:
    interactive = sys.stdin.isatty() and sys.stdout.isatty() and not args.headless
    if interactive:
        try:
            from tui.dashboard.app import run_dashboard
        except ImportError:
            run_dashboard = None
        if run_dashboard is not None:
            return run_dashboard(engine)
    return run_headless(engine, verbose=args.verbose)


def _detach(dataset: Path, args) -> int:
    import shlex

    from tui.service.daemon import ServiceStartFailed, start_detached
    from tui.service.registry import DatasetBusy

    _, options, _ = _profile_and_options(args)
    spec = {"dataset": str(dataset.resolve()), "profile": args.profile or _default_profile(),
            "only": options.only, "skip": options.skip, "overwrite": options.overwrite, "jobs": options.jobs,
            "cluster": options.cluster, "log_dir": str(options.log_dir.resolve()) if options.log_dir else None,
            "module_options": options.module_options}
    where = shlex.quote(str(dataset))
    try:
        record = start_detached(spec)
    except DatasetBusy as busy:
        pid = f" (pid {busy.record.pid})" if busy.record else ""
        print(f"mirdeck: a run is already in progress on {dataset}{pid}; nothing new started.\n"
              f"  watch it: mirdeck attach {where}")
        return 0
    except ServiceStartFailed as exc:
        return _fail(str(exc))
    print(f"mirdeck: run service {record.pid} started on {record.dataset}; it goes on when this terminal closes.\n"
          f"  watch it: mirdeck attach {where}   (or mirdeck status, mirdeck serve {where})\n"
          f"  run log:  {record.log_dir}")
    return 0


def _default_profile() -> str:
    from tui.run.profiles import default_name

    return default_name()


def _attach_instead(dataset: Path, busy, args) -> int:
    if busy.record is None:
        return _fail(f"{busy}; it cannot be watched from here (it has not said where yet): try 'mirdeck status'")
    print(f"mirdeck: a run is already in progress on {dataset} (pid {busy.record.pid}); watching it instead of "
          "starting a second one (this command's options are not used)", file=sys.stderr)
    return _attach_record(busy.record, args)


def _find_run(dataset: Path | None):
    from tui.service.registry import read_record, runs_in_progress

    if dataset is not None:
        record = read_record(dataset)
        if record is None:
            raise SystemExit(_fail(f"no run in progress on {dataset} (start one with: mirdeck run {dataset} --detach)"))
        return record
    runs = runs_in_progress()
    if not runs:
        raise SystemExit(_fail("no run in progress (start one with: mirdeck run DATASET --detach)"))
    if len(runs) > 1:
        raise SystemExit(_fail("several runs in progress; name one:\n" + "\n".join(f"  mirdeck attach {r.dataset}"
                                                                                    for r in runs)))
    return runs[0]


def _attach_record(record, args) -> int:
    import asyncio
    import os

    from tui.service.client import RemoteRun, ServiceLost, ServiceUnreachable

    remote = RemoteRun(record)
    web = bool(os.environ.get("TEXTUAL_DRIVER"))  # a browser tab of 'mirdeck serve'
    jsonl = getattr(args, "jsonl", False)
    if not jsonl and not getattr(args, "headless", False) and (web or (sys.stdin.isatty() and sys.stdout.isatty())):
        from tui.dashboard.attach import run_attached

        return run_attached(remote)
    if jsonl:
        import orjson

        from tui.run import events as ev

        out = sys.stdout.buffer

        def write(event) -> None:
            if isinstance(event, ev.WorkerLog):  # the same lines as the run's events.jsonl
                return
            try:
                out.write(orjson.dumps(event.to_dict()) + b"\n")
                out.flush()
            except BrokenPipeError:  # the reader (head, a script) has had enough: leave quietly
                os._exit(0)

        remote.subscribe(write)
    else:
        from tui.headless import HeadlessPrinter

        remote.subscribe(HeadlessPrinter(verbose=getattr(args, "verbose", False)))
    try:
        stats = asyncio.run(remote.run())
    except (ServiceUnreachable, ServiceLost) as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print(f"\nmirdeck: detached; the run goes on (mirdeck attach {record.dataset})", file=sys.stderr)
        return 0
    return 1 if any(s.failed for s in stats.values()) else 0


def cmd_attach(args) -> int:
    import os

    try:
        record = _find_run(args.dataset)
    except SystemExit:
        if os.environ.get("TEXTUAL_DRIVER"):  # a browser tab: say it on the page, not on a stderr nobody sees
            from tui.dashboard.attach import show_message

            where = args.dataset or "DATASET"
            return show_message(f"No run in progress{' on ' + str(args.dataset) if args.dataset else ''}.\n\n"
                                f"Start one with: mirdeck run {where} --detach, then reload this page.")
        raise
    return _attach_record(record, args)


def cmd_stop(args) -> int:
    import asyncio

    from tui.run import runlog
    from tui.service.client import RemoteRun, ServiceLost, ServiceUnreachable, control

    record = _find_run(args.dataset)
    try:
        answer = control(record, "stop_now" if args.now else "stop")
    except (ServiceUnreachable, ServiceLost, OSError, TimeoutError) as exc:
        return _fail(f"{record.dataset}: {exc}")
    if answer.get("type") != "ok":
        return _fail(f"{record.dataset}: the run refused the stop ({answer.get('message', answer)})")
    if answer.get("message") == "the run is over":
        print(f"mirdeck: the run on {record.dataset} is already over")
        return 0
    how = "now (workers killed)" if args.now else "after what the workers are computing"
    print(f"mirdeck: stopping the run on {record.dataset} {how}", flush=True)
    if args.no_wait:
        return 0
    remote = RemoteRun(record)
    try:
        asyncio.run(remote.run())
    except (ServiceUnreachable, ServiceLost):
        pass  # it ended between the stop and this connection
    finished = remote.finished
    if finished is None:
        print(f"mirdeck: the run on {record.dataset} has ended (its log: {record.log_dir})")
        return 0
    if not finished.stopped:
        print(f"mirdeck: the run on {record.dataset} finished before the stop took effect")
        return 0
    left = len(finished.left)
    where = f", listed in {Path(record.log_dir) / runlog.LEFT_FILE}" if left else ""
    print(f"mirdeck: stopped after {finished.wall_seconds:.0f} s; {left} track(s) not processed{where}")
    return 0


def cmd_status(args) -> int:
    import json

    from tui.service.client import ServiceLost, ServiceUnreachable, status
    from tui.service.registry import read_record, runs_in_progress

    if args.dataset is not None:
        record = read_record(args.dataset)
        records = [record] if record else []
    else:
        records = runs_in_progress()
    if not records:
        where = f" on {args.dataset}" if args.dataset else ""
        print(f"no run in progress{where}")
        return 1 if args.dataset else 0
    rows = []
    for record in records:
        try:
            state = status(record)
        except (ServiceUnreachable, ServiceLost, OSError, TimeoutError) as exc:
            state = {"error": str(exc)}
        rows.append({"dataset": record.dataset, "pid": record.pid, "detached": record.detached,
                     "socket": record.socket, **{k: v for k, v in state.items() if k != "type"},
                     "log_dir": record.log_dir})
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    from tui.service.status import format_rows

    print(format_rows(rows))
    return 0


def cmd_serve(args) -> int:
    from tui.dashboard.web import ServeRefused, serve

    try:
        return serve(args.dataset, host=args.host, port=args.port, public=args.public,
                     public_url=args.public_url.rstrip("/") if args.public_url else None,
                     certfile=args.certfile, keyfile=args.keyfile)
    except ServeRefused as exc:
        return _fail(str(exc))


def run_headless(engine, *, verbose: bool = False) -> int:
    import asyncio
    import signal

    from tui.headless import HeadlessPrinter
    from tui.run.runlog import RunLog

    printer = HeadlessPrinter(verbose=verbose)
    engine.subscribe(RunLog(engine.log_dir))
    engine.subscribe(printer)

    async def go():
        loop = asyncio.get_running_loop()
        presses = 0

        def on_interrupt():
            nonlocal presses
            presses += 1
            if presses == 1:
                print("\nmirdeck: stopping: what the workers are computing finishes, nothing new starts "
                      "(Ctrl-C again to stop now)", file=sys.stderr)
                engine.stop()
            else:
                engine.stop(immediate=True)

        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        loop.add_signal_handler(signal.SIGTERM, lambda: engine.stop(immediate=True))
        return await engine.run()

    asyncio.run(go())
    return engine.exit_code()


def cmd_run(args) -> int:
    return _run(args.dataset, args)


def cmd_demo(args) -> int:
    from tui import demo

    truth = demo.create(args.dir)
    print(f"demo dataset: {args.dir.resolve()} ({len(truth)} tracks)")
    if args.no_run:
        return 0
    code = _run(args.dir, args)
    # The demo holds bad tracks on purpose (too short, near silence): failures there are expected.
    return 0 if code in (0, 1) else code


def cmd_dashboard(args) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return _fail("the dashboard needs a terminal; without one use 'mirdeck run DATASET'")
    from tui.dashboard.app import run_setup

    return run_setup(args.dataset, args.profile)


def modules_missing_models(options: dict[str, dict] | None = None) -> dict[str, list[str]]:
    """Modules whose models (for these per-module options) are not installed, with the missing names."""
    from backends.registry import all_specs
    from tui.install.models import ManifestError, load_manifest, status

    try:
        manifest = load_manifest()
    except ManifestError:
        manifest = {}
    missing: dict[str, list[str]] = {}
    for spec in all_specs().values():
        needed = spec.needed_models((options or {}).get(spec.name))
        absent = [m for m in needed if m not in manifest or not status(manifest[m])[0]]
        if absent:
            missing[spec.name] = absent
    return missing


def cmd_scan(args) -> int:
    from tui.run.dataset import scan

    try:
        result = scan(args.dataset)
    except FileNotFoundError as exc:
        return _fail(str(exc))
    for track in result.tracks:
        stems = ", ".join(track.stems) or "no stems"
        print(f"{track.name}\t{track.mix.name}\t{stems}")
    for problem in result.problems:
        print(f"skipped: {problem}", file=sys.stderr)
    print(f"{len(result.tracks)} tracks, {len(result.problems)} problems", file=sys.stderr)
    return 0


def cmd_organize(args) -> int:
    from tui.run.dataset import organize

    try:
        actions = organize(args.source, args.dest, move=args.move, dry_run=args.dry_run)
    except FileNotFoundError as exc:
        return _fail(str(exc))
    verb = {(True, True): "would move", (True, False): "would copy", (False, True): "moved",
            (False, False): "copied"}[(bool(args.dry_run), bool(args.move))]
    for a in actions:
        if a.done:
            print(f"{verb} {a.source} -> {a.target}")
        else:
            print(f"refused {a.source}: {a.reason}", file=sys.stderr)
    return 1 if any(not a.done for a in actions) else 0


def cmd_profiles(args) -> int:
    from tui.run.profiles import ProfileError, list_names, load

    if not args.name:
        for name in list_names():
            try:
                profile = load(name)
                print(f"{name:<14} {profile.description}")
            except ProfileError as exc:
                print(f"{name:<14} INVALID: {exc}")
        return 0
    try:
        profile = load(args.name)
    except ProfileError as exc:
        return _fail(str(exc))
    print(f"profile {profile.name} ({profile.path})")
    if len(profile.chain) > 1:
        print(f"extends: {' -> '.join(profile.chain)}")
    print(f"device: {profile.device}   VRAM budget: {profile.vram_budget_gb:g} GB   jobs: {profile.effective_jobs()}")
    if profile.llama:
        print("llama.cpp: " + ", ".join(f"{k}={v}" for k, v in profile.llama.items()))
    env = profile.profile_env(args.backend)
    scope = f" for {args.backend}" if args.backend else ""
    print(f"environment{scope} (set in every worker; the parent's stays as it is):")
    for key, value in env.items():
        print(f"  {key}={value}")
    for name, override in profile.backend.items():
        extra = ", ".join(f"{k}={v}" for k, v in override.env.items())
        details = [f"timeout {override.timeout_s:g} s" if override.timeout_s else "", extra,
                   ", ".join(f"{k}={v}" for k, v in override.options.items())]
        print(f"  [{name}] " + "; ".join(d for d in details if d))
    return 0


def cmd_modules(args) -> int:
    from backends.registry import all_specs

    for spec in all_specs().values():
        needs = ", ".join(f"{n.source}@{n.sample_rate or 'native'}{'' if n.required else '?'}" for n in spec.audio)
        print(f"{spec.name} v{spec.version} [{spec.device}] — {spec.description}")
        if spec.keys or spec.optional_keys or not spec.provides:
            print(f"    keys: {', '.join(spec.keys + spec.optional_keys)}")
        if spec.provides:
            print(f"    writes stems: {', '.join(spec.provides)} (FLAC files of the track, where missing)")
        print(f"    reads: {needs or 'nothing'}" + (f"; requires: {', '.join(spec.requires)}" if spec.requires else "")
              + (f"; models: {', '.join(spec.models)}" if spec.models else ""))
    return 0


def _option_pairs(items: list[str]) -> dict:
    import json

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(_fail(f"option {item!r} must look like KEY=VALUE"))
        try:
            options[key] = json.loads(value)  # numbers, true/false
        except ValueError:
            options[key] = value
    return options


def cmd_ab(args) -> int:
    import time

    from tui.ab.run import ABOptions, WinnerRefused, apply_winner_from_report, run_ab, track_folders
    from tui.run.profiles import ProfileError, default_name, load

    if args.apply is not None:
        if not args.winner or args.tracks:
            return _fail("--apply REPORT takes --winner gguf|hf and no tracks (the report names them)")
        try:
            written, left = apply_winner_from_report(args.apply, args.winner,
                                                     f"mirdeck ab --apply --winner {args.winner}")
        except WinnerRefused as exc:
            return _fail(str(exc))
        for line in left:
            print(f"left out: {line}", file=sys.stderr)
        print(f"wrote the {args.winner} answers into {len(written)} tracks' .INFO files")
        return 0 if not left else 1
    if not args.tracks:
        return _fail("give track or dataset folders to compare (or --apply REPORT --winner gguf|hf)")
    try:
        profile = load(args.profile or default_name())
    except ProfileError as exc:
        return _fail(str(exc))
    missing = [str(p) for p in args.tracks if not p.is_dir()]
    if missing:
        return _fail(f"not a folder: {', '.join(missing)}")
    tracks, problems = track_folders(args.tracks)
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    if not tracks:
        return _fail("no tracks to compare")
    out = args.out or Path("mirdeck-ab") / time.strftime("%Y%m%d-%H%M%S")
    if out.exists() and any(out.iterdir()):
        return _fail(f"{out}: report folder exists and is not empty")
    from backends.flamingo.prompts import SAMPLING_KEYS

    sampling = {k: getattr(args, k) for k in SAMPLING_KEYS}
    options = ABOptions(prompts_file=args.prompts, sampling={k: v for k, v in sampling.items() if v is not None},
                        backend_options={"gguf": _option_pairs(args.gguf_option), "hf": _option_pairs(args.hf_option)},
                        winner=args.winner, jobs=args.jobs)
    print(f"A/B on {len(tracks)} tracks; reports in {out.resolve()}", file=sys.stderr)
    try:
        summary, _ = run_ab(tracks, profile, out, options)
    except (ValueError, WinnerRefused) as exc:
        return _fail(str(exc))
    for side, numbers in summary["backends"].items():
        na = lambda v: "n/a" if v is None else f"{v:g}"  # noqa: E731
        print(f"{side:>5}: {numbers['ok_tracks']} ok, {numbers['failed_tracks']} failed, "
              f"{na(numbers['seconds_per_track'])} s/track, {na(numbers['tokens_per_s'])} tokens/s")
    print(f"summary: {(out / 'summary.md').resolve()}")
    if args.winner:
        print(f"wrote the {args.winner} answers into the tracks' .INFO files")
    ok = summary["fair"] and all(n["failed_tracks"] == 0 for n in summary["backends"].values())
    return 0 if ok else 1


def cmd_models(args) -> int:
    from tui import paths
    from tui.install.models import FetchError, ManifestError, fetch, load_manifest, pinning, status

    try:
        manifest = load_manifest()
    except ManifestError as exc:
        return _fail(str(exc))
    if args.action == "list":
        print(f"weights folder: {paths.models_dir()}")
        if not manifest:
            print("the manifest lists no models yet")
        for entry in manifest.values():
            ok, word = status(entry)
            print(f"{'✓' if ok else '✗'} {entry.name:<40} {entry.backend:<14} {word}")
            print(f"  {'':<40} checked by: {pinning(entry)}   licence: {entry.licence}")
        print("a fetch refuses a file whose pinned size or sha256 differs; 'size pinned' and 'not pinned' "
              "entries are checked by length only (docs/models.md says why)")
        from tui.install.llama import describe_for_profile
        print(describe_for_profile())
        return 0
    unknown = [n for n in args.names if n not in manifest]
    if args.action == "verify":
        if unknown:
            return _fail(f"unknown models: {', '.join(unknown)}; known: {', '.join(manifest)}")
        return _verify_models([manifest[n] for n in args.names] or list(manifest.values()))
    if unknown or not args.names:
        return _fail(f"name the models to fetch; unknown: {', '.join(unknown) or '(none given)'}; "
                     f"known: {', '.join(manifest) or '(none)'}")
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    failed = 0
    for name in args.names:
        entry = manifest[name]
        with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn()) as bar:
            task = bar.add_task(name, total=entry.size)
            try:
                path = fetch(entry, progress=lambda done, total: bar.update(task, completed=done, total=total))
            except FetchError as exc:
                failed += 1
                bar.stop()
                print(f"mirdeck: {exc}", file=sys.stderr)
                continue
        print(f"installed {name}: {path} ({pinning(entry)})")
    return 1 if failed else 0


def _verify_models(entries) -> int:
    """Re-hash installed files against the manifest's pins; exit 1 when any differs."""
    from tui.install.models import FetchError, verify_installed

    bad = 0
    for entry in entries:
        try:
            results = verify_installed(entry)
        except FetchError as exc:
            print(f"✗ {entry.name}: {exc}")
            bad += 1
            continue
        if not results:
            print(f"- {entry.name}: not installed")
        for path, ok, word in results:
            bad += ok is False
            print(f"{'·' if ok is None else '✓' if ok else '✗'} {entry.name}: {path}: {word}")
    return 1 if bad else 0


def cmd_export(args) -> int:
    from tui.export import ExportError, ExportOptions, run_export
    from tui.export.template import DEFAULT_DESCRIPTION_KEY, TemplateError, load_template

    if args.shard_size < 1:
        return _fail("--shard-size must be at least 1")
    try:
        options = ExportOptions(template=load_template(args.template),
                                description_key=args.description_key or DEFAULT_DESCRIPTION_KEY,
                                provenance=args.provenance, shards=args.shards, label_maps=args.label_maps,
                                shard_size=args.shard_size)
        summary = run_export(args.dataset, args.format, args.out, options)
    except (ExportError, TemplateError) as exc:
        return _fail(str(exc))
    for problem in summary.problems:
        print(f"problem: {problem}", file=sys.stderr)
    for skipped in summary.skipped:
        print(f"left out: {skipped}", file=sys.stderr)
    print(f"{summary.format}: {summary.exported} of {summary.tracks} tracks -> {summary.out.resolve()} "
          f"({len(summary.written)} files written, {summary.unchanged} unchanged, {len(summary.removed)} removed)")
    return 0


def cmd_report(args) -> int:
    from tui.report import write_report

    if not args.dataset.is_dir():
        return _fail(f"{args.dataset}: dataset folder does not exist")
    out = args.out or args.dataset / ".mirdeck" / "report.html"
    stats = write_report(args.dataset, out)
    print(f"report of {stats.tracks} tracks: {out.resolve()}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run, "demo": cmd_demo, "dashboard": cmd_dashboard, "scan": cmd_scan,
    "organize": cmd_organize, "profiles": cmd_profiles, "modules": cmd_modules, "ab": cmd_ab,
    "models": cmd_models, "attach": cmd_attach, "stop": cmd_stop, "status": cmd_status, "serve": cmd_serve,
    "export": cmd_export, "report": cmd_report,
}


if __name__ == "__main__":
    sys.exit(main())
