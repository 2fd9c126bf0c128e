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
import time
from pathlib import Path

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
    server = subprocess.Popen(mirdeck("serve", str(dataset), "--port", str(port)), env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
                    await cdp("Page.navigate", url=f"http://127.0.0.1:{port}/")
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
                    return text, shot, clients, painted

        text, shot, clients, painted = asyncio.run(look())
    finally:
        if browser is not None:
            browser.terminate()
            browser.wait(30)
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    assert "dash_slow" in text and "Track" in text, text[-2000:]
    assert painted and clients == 1  # the tab is one client of the service
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
    assert done.returncode == 2 and "no authentication" in done.stderr and "--public" in done.stderr
