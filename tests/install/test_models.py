"""The model manifest and the download path, against a real HTTP server on loopback."""
from __future__ import annotations

import hashlib
import http.server
import json
import threading

import pytest

from tui.install.models import FetchError, FolderFile, ModelEntry, fetch, load_manifest, status

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


# ---- checkpoint folders (Hugging Face repositories), file by file ---------------------------------

SHARDS = {"model-00001-of-00002.safetensors": bytes(range(256)) * 3000,
          "model-00002-of-00002.safetensors": bytes(reversed(range(256))) * 2000}
REPO_FILES = {
    "config.json": b'{"model_type": "audioflamingo3"}',
    "tokenizer_config.json": b'{"chat_template": "x"}',
    "model.safetensors.index.json": json.dumps(
        {"metadata": {}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors",
                                        "b.weight": "model-00002-of-00002.safetensors",
                                        "c.weight": "model-00001-of-00002.safetensors"}}).encode(),
    **SHARDS,
}
PREFIX = "/nvidia/music-flamingo-hf/resolve/abc123/"


class RepoHandler(http.server.BaseHTTPRequestHandler):
    """Serves REPO_FILES under Hugging Face's URL form; can cut or corrupt one named file once."""

    cut: str | None = None
    corrupt: str | None = None
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        name = self.path[len(PREFIX):] if self.path.startswith(PREFIX) else None
        RepoHandler.requests.append((name, self.headers.get("Range")))
        if name not in REPO_FILES:
            self.send_error(404)
            return
        body = REPO_FILES[name]
        start = int(self.headers["Range"].split("=")[1].split("-")[0]) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        chunk = body[start:]
        if RepoHandler.corrupt == name:
            chunk = b"\1" * len(chunk)
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if RepoHandler.cut == name:
            RepoHandler.cut = None  # the next try works
            self.wfile.write(chunk[: len(chunk) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(chunk)


@pytest.fixture()
def repo_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RepoHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    RepoHandler.cut = RepoHandler.corrupt = None
    RepoHandler.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def folder_entry(base_url: str, **changes) -> ModelEntry:
    sha = lambda name: hashlib.sha256(REPO_FILES[name]).hexdigest()  # noqa: E731
    files = (FolderFile("config.json"), FolderFile("model.safetensors.index.json"),
             FolderFile("tokenizer_config.json", size=len(REPO_FILES["tokenizer_config.json"])),
             FolderFile("chat_template.jinja", optional=True),  # the repository has none: skipped
             FolderFile("model-00001-of-00002.safetensors", size=len(SHARDS["model-00001-of-00002.safetensors"]),
                        sha256=sha("model-00001-of-00002.safetensors")))
    fields = dict(name="music_flamingo_hf", backend="flamingo_hf", folder="music-flamingo-hf",
                  repo="nvidia/music-flamingo-hf", revision="abc123", files=files,
                  shards_from="model.safetensors.index.json", base_url=base_url)
    return ModelEntry(**{**fields, **changes})


def test_folder_fetch_gets_every_file_and_the_shards_the_index_names(repo_server, tmp_path):
    entry = folder_entry(repo_server)
    assert status(entry, tmp_path)[0] is False
    seen = []
    folder = fetch(entry, directory=tmp_path, progress=lambda done, total: seen.append(done))
    assert folder == tmp_path / "music-flamingo-hf"
    for name, body in REPO_FILES.items():
        assert (folder / name).read_bytes() == body, name
    assert not (folder / "chat_template.jinja").exists() and not list(folder.glob("*.part"))
    assert seen[-1] == sum(len(b) for b in REPO_FILES.values())  # bytes of the whole folder
    ok, word = status(entry, tmp_path)
    assert ok and word.startswith("5 files")
    # A second fetch finds everything installed and downloads nothing.
    RepoHandler.requests = []
    fetch(entry, directory=tmp_path)
    assert [name for name, _ in RepoHandler.requests] == ["chat_template.jinja"]  # only the absent optional file


def test_folder_fetch_resumes_a_partial_shard(repo_server, tmp_path):
    entry = folder_entry(repo_server)
    shard = "model-00002-of-00002.safetensors"  # named only by the index: no size, no checksum known
    RepoHandler.cut = shard
    with pytest.raises(FetchError, match=f"music_flamingo_hf/{shard}: .*run the same fetch again to resume"):
        fetch(entry, directory=tmp_path)
    folder = tmp_path / "music-flamingo-hf"
    partial = folder / f"{shard}.part"
    assert partial.stat().st_size == len(SHARDS[shard]) // 2 and not (folder / shard).exists()
    ok, word = status(entry, tmp_path)
    assert not ok and f"{shard}: partial download" in word
    RepoHandler.requests = []
    fetch(entry, directory=tmp_path)
    assert (folder / shard).read_bytes() == SHARDS[shard]
    assert (shard, f"bytes={len(SHARDS[shard]) // 2}-") in RepoHandler.requests
    assert status(entry, tmp_path)[0]


def test_folder_fetch_checksum_mismatch_names_the_file(repo_server, tmp_path):
    entry = folder_entry(repo_server)
    shard = "model-00001-of-00002.safetensors"
    RepoHandler.corrupt = shard
    with pytest.raises(FetchError, match=f"music_flamingo_hf/{shard}: checksum mismatch"):
        fetch(entry, directory=tmp_path)
    folder = tmp_path / "music-flamingo-hf"
    assert not (folder / shard).exists() and not (folder / f"{shard}.part").exists()
    assert (folder / "config.json").is_file()  # what was verified before stays
    ok, word = status(entry, tmp_path)
    assert not ok and f"{shard}: not installed" in word


def test_a_missing_required_file_names_file_and_url(repo_server, tmp_path):
    entry = folder_entry(repo_server, files=(FolderFile("config.json"), FolderFile("model.safetensors"),
                                             FolderFile("model.safetensors.index.json")))
    with pytest.raises(FetchError, match=r"music_flamingo_hf/model.safetensors: http://127\.0\.0\.1:\d+"
                                         r"/nvidia/music-flamingo-hf/resolve/abc123/model.safetensors "
                                         r"answered HTTP 404"):
        fetch(entry, directory=tmp_path)


def test_shipped_folder_entries_use_the_hugging_face_url_form():
    manifest = load_manifest()
    for name in ("music_flamingo_hf", "music_flamingo_2601_hf"):
        entry = manifest[name]
        assert entry.is_folder and entry.shards_from in {f.path for f in entry.files}
        assert entry.file_url("config.json") == f"https://huggingface.co/{entry.repo}/resolve/main/config.json"
    # The transformers back end loads from the folder fetch installs into.
    from backends.extractors.flamingo_hf import DEFAULT_DIR

    assert manifest["music_flamingo_hf"].folder == DEFAULT_DIR
