"""Shared fixtures. ``pythonpath = ["."]`` in pyproject.toml puts this checkout first on sys.path."""
import os
import subprocess

import pytest

from tests.support.export_fixtures import analysed, dataset  # noqa: F401  (export and report tests)
from tui.paths import ROOT

# Test-only backends (noop, crash, hang, ...) live in tests/support/fake_backends; a test that
# wants them names them in MIRDECK_EXTRA_BACKENDS itself.
os.environ.setdefault("MIRDECK_EXTRA_BACKENDS", "")


@pytest.fixture(scope="session")
def llama_bin_dir():
    """The CPU llama.cpp binaries, built once per machine (about 10 minutes on 2 cores)."""
    done = subprocess.run([str(ROOT / "bin" / "build-llama"), "--variant", "cpu"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return ROOT / "bin" / "llama" / "cpu" / "bin"
