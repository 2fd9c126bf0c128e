"""The model manifest and the download path, against a real HTTP server on loopback."""
from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from tui.models import FetchError, ModelEntry, fetch, load_manifest, status

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class Handler(http.server.BaseHTTPRequestHandler):
    behaviour = "ok"
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        Handler.requests.append(self.headers.get("Range"))
        body = PAYLOAD
        start = 0
        rng = self.headers.get("Range")
        if rng and Handler.behaviour != "no-range":
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        if Handler.behaviour == "corrupt":
            chunk = b"\0" * len(chunk)
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if Handler.behaviour == "truncate":
            Handler.behaviour = "ok"  # the next try works
            self.wfile.write(chunk[: len(chunk) // 3])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(chunk)


@pytest.fixture()
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Handler.requests = []
    Handler.behaviour = "ok"
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def entry(url, **kw):
    return ModelEntry(name="test-model", file="sub/test.bin", url=f"{url}/test.bin", backend="x",
                      size=len(PAYLOAD), sha256=hashlib.sha256(PAYLOAD).hexdigest(), **kw)


def test_fetch_downloads_verifies_and_installs(server, tmp_path):
    seen = []
    path = fetch(entry(server), directory=tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert path == tmp_path / "sub" / "test.bin" and path.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert status(entry(server), tmp_path) == (True, f"{len(PAYLOAD):,} bytes")


def test_truncated_transfer_is_reported_then_resumed(server, tmp_path):
    Handler.behaviour = "truncate"
    with pytest.raises(FetchError, match="run the same fetch again to resume"):
        fetch(entry(server), directory=tmp_path)
    assert not (tmp_path / "sub" / "test.bin").exists()
    ok, word = status(entry(server), tmp_path)
    assert not ok and "partial download" in word
    path = fetch(entry(server), directory=tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert Handler.requests[-1].startswith("bytes=") and Handler.requests[-1] != "bytes=0-"


def test_checksum_mismatch_removes_the_download(server, tmp_path):
    Handler.behaviour = "corrupt"
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch(entry(server), directory=tmp_path)
    assert not list((tmp_path / "sub").iterdir())


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "test.bin.part").write_bytes(PAYLOAD[:1000])
    Handler.behaviour = "no-range"
    assert fetch(entry(server), directory=tmp_path).read_bytes() == PAYLOAD


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(FetchError, match="test-model: cannot reach http://127.0.0.1:9/"):
        fetch(entry("http://127.0.0.1:9"), directory=tmp_path, timeout=2)


def test_manifest_is_valid_and_errors_name_the_table(tmp_path):
    load_manifest()  # the shipped one
    bad = tmp_path / "m.toml"
    bad.write_text('[model.x]\nfile = "a"\nurl = "http://h/a"\n')
    with pytest.raises(Exception, match=r"\[model\.x\]: missing fields \['backend'\]"):
        load_manifest(bad)
