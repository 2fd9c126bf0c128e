"""``mirdeck serve``: the attach dashboard in a web browser, through textual-serve.

textual-serve starts one ``mirdeck attach`` process per browser tab, so every tab is one more
client of the run service, never a second run; closing a tab closes that client only. The page
needs the token in the URL this prints (``web_token``), and listens on loopback unless ``--public``
says otherwise.
"""
from __future__ import annotations

import asyncio
import ipaddress
import os
import shlex
import signal
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

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


def browser_host(host: str) -> str:
    """The address to print for the user's browser: a wildcard listens everywhere but opens nowhere."""
    if host in ("0.0.0.0", "::", ""):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host


def tls_context(certfile: Path, keyfile: Path | None) -> ssl.SSLContext:
    """The server's TLS context from a PEM certificate (and its key, when in another file)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    except (OSError, ssl.SSLError) as exc:
        raise ServeRefused(f"{certfile}{f' / {keyfile}' if keyfile else ''}: cannot use it for TLS ({exc})") from None
    return context


def token_server(command: str, *, host: str, port: int, token: str, public_url: str | None = None,
                 tls: ssl.SSLContext | None = None) -> Any:
    """textual-serve's server with the token check, and the page's websocket URL taken from the address
    the browser used (textual-serve's own is the listening address: 0.0.0.0 would send a remote
    browser to itself)."""
    from textual_serve.server import Server

    from tui.dashboard.web_token import cookie_name, token_middleware

    class TokenServer(Server):  # type: ignore[misc]
        async def _make_app(self) -> Any:
            app = await super()._make_app()
            app.middlewares.append(token_middleware(token, cookie=cookie_name(port), public_url=public_url,
                                                    secure=tls is not None))
            return app

        async def handle_index(self, request: Any) -> Any:
            if public_url is None:
                self.public_url = f"{request.scheme}://{request.host}"
            return await super().handle_index(request)

        async def on_startup(self, app: Any) -> None:
            base = public_url or f"{'https' if tls else 'http'}://{browser_host(host)}:{port}"
            # Flushed at once: whoever started us (a script, a test) reads it before the first tab opens.
            print(f"mirdeck: serving the dashboard on {base}/?token={token}", flush=True)
            print("mirdeck: the link carries the page's token; Ctrl-C stops serving (the run goes on)", flush=True)

        def serve(self, debug: bool = False) -> None:
            """textual-serve's own loop, with the TLS context given to aiohttp (it takes none)."""
            from aiohttp import web

            self.debug = debug
            self.initialize_logging()
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self.request_exit)
            web.run_app(self._make_app(), host=self.host, port=self.port, handle_signals=False, loop=loop,
                        ssl_context=tls, print=lambda *args: None)

    return TokenServer(command, host=host, port=port, title="mirdeck", public_url=public_url)


def serve(dataset: Path | None, *, host: str = "127.0.0.1", port: int = 8000, public: bool = False,
          public_url: str | None = None, certfile: Path | None = None, keyfile: Path | None = None) -> int:
    if not is_loopback(host) and not public:
        raise ServeRefused(f"--host {host} is reachable from other machines: anyone there who gets the page's "
                           "link can watch the run and stop it. Add --public to serve it there "
                           "anyway (or keep 127.0.0.1 and use an SSH tunnel: "
                           f"ssh -L {port}:127.0.0.1:{port} THIS-MACHINE)")
    try:
        import textual_serve.server  # noqa: F401
    except ImportError:
        raise ServeRefused("textual-serve is not installed: pip install 'mirdeck[serve]' "
                           "(bin/setup installs it)") from None
    from tui.dashboard.web_token import new_token

    if keyfile and not certfile:
        raise ServeRefused("--keyfile needs --certfile")
    tls = tls_context(certfile, keyfile) if certfile else None
    try:
        token = new_token()
    except ValueError as exc:
        raise ServeRefused(str(exc)) from None
    if not is_loopback(host) and tls is None:
        print(f"mirdeck: WARNING: serving on {host}:{port} over plain HTTP: the token keeps out who does not "
              "have the link, not who can read the network (--certfile for TLS)", file=sys.stderr)
    # The tabs' processes import this checkout whatever the caller's sys.path was.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.ROOT), os.environ.get("PYTHONPATH", "")]))
    token_server(attach_command(dataset), host=host, port=port, token=token, public_url=public_url, tls=tls).serve()
    return 0
