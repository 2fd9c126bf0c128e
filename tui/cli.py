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
        p.add_argument("--verbose", "-v", action="store_true", help="print a line per finished track")
        p.add_argument("--set", action="append", dest="module_options", metavar="MODULE.OPTION=VALUE",
                       help="a module's option for this run, over the profile's "
                            "(e.g. essentia_tf.threshold=0.2, essentia_tf.heads='[\"genre\"]')")

    p = sub.add_parser("run", help="extract features for every track of a dataset")
    p.add_argument("dataset", type=Path)
    run_options(p)

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
    p.add_argument("tracks", nargs="+", type=Path, help="track folders, or dataset folders (every track in them)")
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
    p.add_argument("--jobs", "-j", type=int, default=1)

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

    p = sub.add_parser("models", help="show installed models; 'models fetch NAME...' downloads them")
    p.add_argument("action", nargs="?", choices=["list", "fetch"], default="list")
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


def _engine(dataset: Path, args):
    from backends.registry import RegistryError
    from tui.run.engine import Engine, RunOptions
    from tui.run.profiles import ProfileError, default_name, load

    try:
        profile = load(args.profile or default_name())
    except ProfileError as exc:
        raise SystemExit(_fail(str(exc)))
    options = RunOptions(only=_split(args.only), skip=_split(args.skip), overwrite=_split(args.overwrite),
                         jobs=args.jobs, log_dir=args.log_dir,
                         module_options=_module_options(getattr(args, "module_options", None)))
    engine = Engine(dataset, profile, options)
    from tui.run.plan import resolve_modules

    try:  # check module names now, before anything starts
        resolve_modules(engine.specs, options.only, options.skip)
        for name in options.module_options:
            if name not in engine.specs:
                raise RegistryError(f"unknown module {name!r} in --set; known modules: {', '.join(engine.specs)}")
        for name in options.overwrite:
            if name != "all" and name not in engine.specs:
                raise RegistryError(f"unknown module {name!r} in --overwrite; known modules: {', '.join(engine.specs)}")
    except RegistryError as exc:
        raise SystemExit(_fail(str(exc)))
    return engine


def _run(dataset: Path, args) -> int:
    if not dataset.is_dir():
        return _fail(f"{dataset}: dataset folder does not exist")
    engine = _engine(dataset, args)
    interactive = sys.stdin.isatty() and sys.stdout.isatty() and not args.headless
    if interactive:
        try:
            from tui.dashboard.app import run_dashboard
        except ImportError:
            run_dashboard = None
        if run_dashboard is not None:
            return run_dashboard(engine)
    return run_headless(engine, verbose=args.verbose)


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
                print("\nmirdeck: stopping after the tracks in flight (Ctrl-C again to stop now)", file=sys.stderr)
                engine.stop()
            else:
                engine.stop(immediate=True)

        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        loop.add_signal_handler(signal.SIGTERM, lambda: engine.stop(immediate=True))
        return await engine.run()

    stats = asyncio.run(go())
    return 1 if any(s.failed for s in stats.values()) else 0


def cmd_run(args) -> int:
    return _run(args.dataset, args)


def cmd_demo(args) -> int:
    from tui import demo

    truth = demo.create(args.dir)
    print(f"demo dataset: {args.dir.resolve()} ({len(truth)} tracks)")
    if args.no_run:
        return 0
    if not args.only:
        # A fresh machine has no model weights: the demo shows what runs, and says what to fetch,
        # instead of failing every track of every model-based module.
        missing = modules_missing_models()
        if missing:
            args.skip = (args.skip or []) + [",".join(missing)]
            for name, models in missing.items():
                print(f"demo: skipping {name}: model not installed (mirdeck models fetch {' '.join(models)})")
    code = _run(args.dir, args)
    # The demo holds bad tracks on purpose (too short, near silence): failures there are expected.
    return 0 if code in (0, 1) else code


def cmd_dashboard(args) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return _fail("the dashboard needs a terminal; without one use 'mirdeck run DATASET'")
    from tui.dashboard.app import run_setup

    return run_setup(args.dataset, args.profile)


def modules_missing_models() -> dict[str, list[str]]:
    """Modules whose declared models are not installed, with the missing model names."""
    from backends.registry import all_specs
    from tui.install.models import ManifestError, load_manifest, status

    try:
        manifest = load_manifest()
    except ManifestError:
        manifest = {}
    missing: dict[str, list[str]] = {}
    for spec in all_specs().values():
        absent = [m for m in spec.models if m not in manifest or not status(manifest[m])[0]]
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
        print(f"    keys: {', '.join(spec.keys + spec.optional_keys)}")
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

    from tui.ab.run import ABOptions, WinnerRefused, run_ab, track_folders
    from tui.run.profiles import ProfileError, default_name, load

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
    from tui.install.models import FetchError, ManifestError, fetch, load_manifest, status

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
            print(f"{'✓' if ok else '✗'} {entry.name:<28} {entry.backend:<14} {word}   {entry.licence}")
        from tui.install.llama import describe_for_profile
        print(describe_for_profile())
        return 0
    unknown = [n for n in args.names if n not in manifest]
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
        print(f"installed {name}: {path}")
    return 1 if failed else 0


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
    "models": cmd_models, "export": cmd_export, "report": cmd_report,
}


if __name__ == "__main__":
    sys.exit(main())
