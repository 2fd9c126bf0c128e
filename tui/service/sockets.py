"""The run's Unix socket: a private folder in the run folder, a socket only its user can open.

The folder is made 0700 before the socket is bound in it, so there is no moment at which another
user could connect; the socket itself is then made 0600 as well. Linux limits a socket's address
to 107 bytes, and dataset paths are often longer: such a path is reached through
``/proc/self/fd/N/`` (a descriptor of its folder), which the kernel resolves like any folder.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

SOCKET_DIR = "service"
SOCKET_NAME = "events.sock"
MAX_ADDRESS = 100  # sun_path holds 108 bytes with the terminating NUL; keep a margin


def socket_path(log_dir: Path) -> Path:
    return Path(log_dir) / SOCKET_DIR / SOCKET_NAME


def make_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)


@contextmanager
def addressable(path: Path) -> Iterator[str]:
    """An address ``bind``/``connect`` accept for ``path``, however long the path is."""
    text = str(path)
    if len(text.encode()) <= MAX_ADDRESS:
        yield text
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)
