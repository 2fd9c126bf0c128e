"""``mirdeck serve``: the attach dashboard through textual-serve, in a real headless Chromium."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.dashboard import alive, tiny_dataset
from tests.support.service import mirdeck, start_detached, wait_until
from tui.service import registry
from tui.service.client import control, status

# Every chunk the page's websocket receives is the app's terminal output: kept where the test can read it.
HOOK = """
(() => {
  const Original = window.WebSocket;
  window.__mirdeckText = "";
  const decoder = new TextDecoder();
  window.WebSocket = function (...args) {
    const ws = new Original(...args);
    ws.addEventListener("message", (e) => {
      if (e.data instanceof ArrayBuffer) window.__mirdeckText += decoder.decode(e.data, {stream: true});
      else if (typeof e.data === "string") window.__mirdeckText += e.data;
    });
    return ws;
  };
  window.WebSocket.prototype = Original.prototype;
  Object.assign(window.WebSocket, Original);
})();
"""



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_serve(env, *args: str) -> tuple[subprocess.Popen, str]:
    """``mirdeck serve ARGS`` and the link it printed (the one that carries the page's token)."""
    server = subprocess.Popen(mirdeck("serve", *args), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    found: list[str] = []

    def read() -> None:
        assert server.stdout is not None
        for line in server.stdout:
            if "serving the dashboard on " in line and not found:
                found.append(line.split("serving the dashboard on ", 1)[1].strip())

    threading.Thread(target=read, daemon=True).start()
    try:
        url = wait_until(lambda: found and found[0], 60, "mirdeck serve to print its link")
    except AssertionError:
        stop_serve(server)
        raise
    return server, url


def stop_serve(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGINT)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(30)


class DevTools:
    """The few Chrome DevTools Protocol calls the test needs, over the page's websocket."""

    def __init__(self, ws):
        self.ws = ws
        self.next_id = 0

    async def __call__(self, method: str, **params):
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = json.loads((await self.ws.receive()).data)
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression: str):
        return (await self("Runtime.evaluate", expression=expression, returnByValue=True))["result"].get("value")


@pytest.mark.slow
def test_served_dashboard_loads_in_headless_chromium_and_shows_the_live_run(tmp_path, env):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (bin/setup --test installs it)")
    pytest.importorskip("textual_serve", reason="textual-serve is not installed (the serve extra)")
    aiohttp = pytest.importorskip("aiohttp")
    dataset = tiny_dataset(tmp_path / "ds", [f"Track {i:02d}" for i in range(8)])
    service = start_detached(dataset, env, steps=100, step_seconds=0.2)  # 20 s a track: live for the whole test
    record = wait_until(lambda: registry.read_record(dataset), 30, "the run's record")
    port, devtools_port = free_port(), free_port()
    server, link = start_serve(env, str(dataset), "--port", str(port))
    browser = None
    try:
        wait_until(lambda: listening(port), 60, "mirdeck serve to listen")
        browser = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--remote-debugging-port={devtools_port}", f"--user-data-dir={tmp_path / 'chromium'}",
             "--window-size=1400,900", "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: listening(devtools_port), 60, "Chromium's DevTools port")

        async def look():
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{devtools_port}/json/list") as reply:
                    page = next(t for t in await reply.json() if t["type"] == "page")
                async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    cdp = DevTools(ws)
                    await cdp("Page.enable")
                    await cdp("Page.addScriptToEvaluateOnNewDocument", source=HOOK)
                    await cdp("Page.navigate", url=link)  # the token is traded for a cookie on the way
                    deadline = time.monotonic() + 90
                    text = ""
                    while time.monotonic() < deadline:
                        text = await cdp.evaluate("window.__mirdeckText || ''") or ""
                        if "dash_slow" in text and "Track" in text:
                            break
                        await asyncio.sleep(0.5)
                    clients = (await asyncio.to_thread(status, record))["clients"]
                    await asyncio.sleep(2)  # let the canvas paint the frames it has received
                    painted = await cdp.evaluate("document.body.classList.contains('-first-byte')")
                    shot = base64.b64decode((await cdp("Page.captureScreenshot", format="png"))["data"])
                    address = await cdp.evaluate("location.href")
                    return text, shot, clients, painted, address

        text, shot, clients, painted, address = asyncio.run(look())
    finally:
        if browser is not None:
            browser.terminate()
            browser.wait(30)
        stop_serve(server)
    assert "dash_slow" in text and "Track" in text, text[-2000:]
    assert painted and clients == 1  # the tab is one client of the service
    assert address == f"http://127.0.0.1:{port}/"  # the token left the address bar
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000
    (tmp_path / "serve.png").write_bytes(shot)
    if os.environ.get("MIRDECK_SCREENSHOT_DIR"):  # how docs/screenshots/serve.png is made
        Path(os.environ["MIRDECK_SCREENSHOT_DIR"], "serve.png").write_bytes(shot)
    # Closing the tab (and the server) closed that client only: the run goes on.
    wait_until(lambda: status(record)["clients"] == 0, 30, "the tab's client to go")
    assert alive(service) and not status(record)["stopping"]
    control(record, "stop_now")
    wait_until(lambda: not alive(service), 30, "the service to exit")


def test_serve_refuses_an_address_beyond_loopback_without_public(tmp_path, env):
    done = subprocess.run(mirdeck("serve", "--host", "0.0.0.0", "--port", "1"), env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "reachable from other machines" in done.stderr and "--public" in done.stderr


def test_serve_refuses_a_short_token_from_the_environment(env):
    done = subprocess.run(mirdeck("serve", "--port", "1"), env={**env, "MIRDECK_SERVE_TOKEN": "secret"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "MIRDECK_SERVE_TOKEN is 6 characters long" in done.stderr


@pytest.mark.slow
def test_nothing_is_served_without_the_printed_token(env):
    aiohttp = pytest.importorskip("aiohttp")
    pytest.importorskip("textual_serve", reason="textual-serve is not installed (the serve extra)")
    port = free_port()
    server, link = start_serve(env, "--port", str(port))
    token = parse_qs(urlsplit(link).query)["token"][0]
    base = f"http://127.0.0.1:{port}"
    assert link == f"{base}/?token={token}" and len(token) >= 32

    async def probe():
        seen = {}
        async with aiohttp.ClientSession() as anonymous:
            for name, path in [("page", "/"), ("static", "/static/js/textual.js"), ("ws", "/ws"),
                               ("wrong", "/?token=" + "x" * len(token))]:
                async with anonymous.get(base + path) as reply:
                    seen[name] = (reply.status, await reply.text())
            # A script may bring the token itself instead of a cookie.
            async with anonymous.ws_connect(f"{base}/ws?width=80&height=24&token={token}") as ws:
                seen["script_ws"] = (await ws.receive(timeout=60)).type
        # An IP address is a host aiohttp keeps cookies for only when told to: a browser always does.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as user:
            async with user.get(link, allow_redirects=False) as reply:
                seen["link"] = (reply.status, reply.headers.get("Location"), reply.headers.getall("Set-Cookie"))
            async with user.get(base + "/") as reply:
                seen["cookie"] = (reply.status, await reply.text())
            async with user.get(base + "/", headers={"Host": f"localhost:{port}"}) as reply:
                seen["by_name"] = await reply.text()
            try:
                async with user.ws_connect(base + "/ws", headers={"Origin": "http://evil.example"}):
                    seen["foreign_ws"] = 101
            except aiohttp.WSServerHandshakeError as exc:
                seen["foreign_ws"] = exc.status
            async with user.ws_connect(base + "/ws?width=80&height=24", headers={"Origin": base}) as ws:
                seen["own_ws"] = (await ws.receive(timeout=60)).type
        return seen

    try:
        seen = asyncio.run(probe())
    finally:
        stop_serve(server)
    for name in ("page", "static", "ws"):
        assert seen[name][0] == 403 and "needs its token" in seen[name][1], (name, seen[name])
    assert seen["wrong"][0] == 403 and "wrong token" in seen["wrong"][1]
    status_code, location, cookies = seen["link"]
    assert status_code == 302 and location == "./"
    assert any(c.startswith(f"mirdeck_serve_token_{port}={token}") and "HttpOnly" in c and "SameSite=Lax" in c
               for c in cookies), cookies
    assert seen["cookie"][0] == 200 and f"ws://127.0.0.1:{port}/ws" in seen["cookie"][1]
    # The page sends the browser's websocket to the address the browser used, not the listening one.
    assert f"ws://localhost:{port}/ws" in seen["by_name"]
    assert seen["foreign_ws"] == 403
    assert seen["own_ws"] in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT)
    assert seen["script_ws"] in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT)


def self_signed(folder: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed (Debian's openssl package makes the test certificate)")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.mark.slow
def test_serve_over_tls_with_a_given_certificate(tmp_path, env):
    aiohttp = pytest.importorskip("aiohttp")
    pytest.importorskip("textual_serve", reason="textual-serve is not installed (the serve extra)")
    cert, key = self_signed(tmp_path)
    port = free_port()
    server, link = start_serve(env, "--port", str(port), "--certfile", str(cert), "--keyfile", str(key))
    base = f"https://127.0.0.1:{port}"

    async def probe():
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                         connector=aiohttp.TCPConnector(ssl=False)) as user:
            async with user.get(base + "/") as reply:
                anonymous = reply.status
            async with user.get(link, allow_redirects=False) as reply:
                cookies = reply.headers.getall("Set-Cookie")
            async with user.get(base + "/") as reply:
                return anonymous, cookies, reply.status, await reply.text()

    try:
        assert link.startswith(f"{base}/?token=")
        anonymous, cookies, status_code, page = asyncio.run(probe())
    finally:
        stop_serve(server)
    assert anonymous == 403 and status_code == 200
    assert any("Secure" in c for c in cookies), cookies  # never sent back over plain HTTP
    assert f"wss://127.0.0.1:{port}/ws" in page  # the browser's websocket is encrypted too


@pytest.mark.slow
def test_behind_a_proxy_the_public_urls_origin_is_the_pages_own(env):
    aiohttp = pytest.importorskip("aiohttp")
    pytest.importorskip("textual_serve", reason="textual-serve is not installed (the serve extra)")
    port = free_port()
    server, link = start_serve(env, "--port", str(port), "--public-url", "https://dash.example.org/mirdeck")
    token = parse_qs(urlsplit(link).query)["token"][0]
    assert link == f"https://dash.example.org/mirdeck/?token={token}"

    async def probe():
        async with aiohttp.ClientSession() as proxy:  # what the proxy forwards, Host rewritten to ours
            url = f"http://127.0.0.1:{port}/ws?width=80&height=24&token={token}"
            async with proxy.ws_connect(url, headers={"Origin": "https://dash.example.org"}) as ws:
                kind = (await ws.receive(timeout=60)).type
            try:
                async with proxy.ws_connect(url, headers={"Origin": "https://evil.example"}):
                    return kind, 101
            except aiohttp.WSServerHandshakeError as exc:
                return kind, exc.status

    try:
        kind, foreign = asyncio.run(probe())
    finally:
        stop_serve(server)
    assert kind in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT) and foreign == 403


def test_serve_refuses_a_certificate_it_cannot_use(tmp_path, env):
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate\n")
    done = subprocess.run(mirdeck("serve", "--port", "1", "--certfile", str(bad)), env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and f"{bad}: cannot use it for TLS" in done.stderr
