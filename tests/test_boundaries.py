"""The rooms of docs/architecture.md, checked: import-linter's contracts in pyproject.toml hold for
this tree and break when a rule is broken, and the parent's cheap entry points stay cheap."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tui.cli import COMMANDS, build_parser
from tui.paths import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
HEAVY = ("numpy", "scipy", "torch", "tensorflow", "essentia", "transformers", "librosa", "numba", "soundfile",
         "textual", "ray")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tree, capture_output=True, text=True,
                          timeout=120)


def copy_of_the_tree(dest: Path) -> Path:
    for name in ("backends", "tui", "tests", "benchmarks"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__", "__snapshots__",
                                                                                 "fixtures"))
    shutil.copy(ROOT / "pyproject.toml", dest)
    return dest


def test_the_import_contracts_hold():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "6 kept, 0 broken" in done.stdout


@pytest.mark.parametrize("module, line, broken", [
    ("backends/spec.py", "from tui import paths", "backends is not allowed to import tui"),
    ("tui/dataset_alias.py", "import torch", "tui is not allowed to import torch"),
    ("tui/run/plan.py", "import rich.text", "tui.run is not allowed to import rich"),
    ("tui/gpu/model.py", "from tui.dashboard import app", "tui.gpu is not allowed to import tui.dashboard"),
    ("tests/run/test_store.py", "import benchmarks.engine", "tests is not allowed to import benchmarks"),
    ("tui/service/client.py", "import textual", "tui.service is not allowed to import textual"),
])
def test_a_forbidden_import_breaks_its_contract(tmp_path, module, line, broken):
    tree = copy_of_the_tree(tmp_path)
    target = tree / module
    target.write_text((target.read_text() if target.exists() else "") + f"\n{line}\n")
    done = lint_imports(tree)
    assert done.returncode != 0 and broken in done.stdout, done.stdout[-3000:]


def test_the_cli_and_the_engine_import_nothing_heavy():
    """``mirdeck --help`` answers at once: the CLI, the engine and every spec load no heavy library."""
    code = ("import sys\n"
            "from tui.cli import build_parser\n"
            "import tui.run.engine\n"
            "from backends.registry import all_specs\n"
            "build_parser().format_help(); all_specs()\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_every_subcommand_has_a_handler():
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    assert set(subcommands) == set(COMMANDS)
