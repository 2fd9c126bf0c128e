import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Test-only backends (noop, crash, hang, ...) live in tests/fake_backends.
os.environ.setdefault("MIRDECK_EXTRA_BACKENDS", "")
