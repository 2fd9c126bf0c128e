"""mirdeck's child programs: one extractor per module, each run in its own worker process.

Nothing here imports ``tui``; heavy libraries are imported only inside the extractor that needs
them, so importing this package (and its registry) stays cheap for the parent process.
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The checkout (or installed tree) holding ``backends/``, ``models/`` and ``bin/``."""
