"""``mirdeck serve``: the attach dashboard in a web browser, through textual-serve.

textual-serve starts one ``mirdeck attach`` process per browser tab, so every tab is one more
client of the run service, never a second run; closing a tab closes that client only. The page
has no authentication: it listens on loopback unless ``--public`` says otherwise.
"""
from __future__ import annotations

import ipaddress
import os
import shlex
import sys
from pathlib import Path

from tui import paths


class ServeRefused(Exception):
    pass


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def attach_command(dataset: Path | None) -> str:
    argv = [sys.executable, "-m", "tui.cli", "attach"]
    if dataset is not None:
        argv.append(str(Path(dataset).resolve()))
    return shlex.join(argv)


def serve(dataset: Path | None, *, host: str = "127.0.0.1", port: int = 8000, public: bool = False) -> int:
    if not is_loopback(host) and not public:
        raise ServeRefused(f"--host {host} is reachable from other machines, and the served dashboard has no "
                           "authentication: anyone who reaches it can watch the run and stop it. Add --public "
                           "to serve it there anyway (or keep 127.0.0.1 and use an SSH tunnel: "
                           f"ssh -L {port}:127.0.0.1:{port} THIS-MACHINE)")
    try:
        from textual_serve.server import Server
    except ImportError:
        raise ServeRefused("textual-serve is not installed: pip install 'mirdeck[serve]' "
                           "(bin/setup installs it)") from None
    if not is_loopback(host):
        print(f"mirdeck: WARNING: serving on {host}:{port} without authentication; anyone who can reach it "
              "can watch and stop the run", file=sys.stderr)
    # The tabs' processes import this checkout whatever the caller's sys.path was.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.ROOT), os.environ.get("PYTHONPATH", "")]))
    Server(attach_command(dataset), host=host, port=port, title="mirdeck").serve()
    return 0
