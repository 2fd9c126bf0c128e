"""The model manifest and the download path, against a real HTTP server on loopback."""
from __future__ import annotations

import hashlib
import http.server
import json
import threading

import pytest

from tui.install.models import (
    FetchError,
    FolderFile,
    ManifestError,
    ModelEntry,
    fetch,
    load_manifest,
    pinning,
    status,
    verify_installed,
)

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
    httpd.handle_error = lambda *args: None  # a client that hangs up early (a refused fetch) is expected
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


def test_checksum_mismatch_names_file_expected_and_got_and_leaves_nothing(server, tmp_path):
    Handler.behaviour = "corrupt"  # same length, wrong bytes: only the hash can tell
    with pytest.raises(FetchError) as caught:
        fetch(entry(server), directory=tmp_path)
    message = str(caught.value)
    assert f"checksum mismatch for {tmp_path / 'sub' / 'test.bin'}" in message
    assert f"expected sha256 {hashlib.sha256(PAYLOAD).hexdigest()}" in message
    assert f"got {hashlib.sha256(bytes(len(PAYLOAD))).hexdigest()}" in message
    assert not list((tmp_path / "sub").iterdir())  # neither the final name nor a .part
    assert status(entry(server), tmp_path) == (False, "not installed")


def test_a_resumed_download_is_hashed_over_both_parts(server, tmp_path):
    """A .part left by an earlier try is part of the hash: a wrong first half fails the whole file."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "test.bin.part").write_bytes(b"\xff" * 1000)  # not PAYLOAD's first bytes
    with pytest.raises(FetchError, match="checksum mismatch"):
        fetch(entry(server), directory=tmp_path)
    assert Handler.requests == ["bytes=1000-"]  # it did resume, and only the hash caught it
    assert not list((tmp_path / "sub").iterdir())
    # The same resume over a correct first part installs the file.
    (tmp_path / "sub" / "test.bin.part").write_bytes(PAYLOAD[:1000])
    assert fetch(entry(server), directory=tmp_path).read_bytes() == PAYLOAD


def test_a_file_of_another_size_is_refused_before_it_is_downloaded(server, tmp_path):
    pinned = ModelEntry(name="test-model", file="sub/test.bin", url=f"{server}/test.bin", backend="x",
                        size=len(PAYLOAD) - 1, sha256=hashlib.sha256(PAYLOAD[:-1]).hexdigest())
    with pytest.raises(FetchError, match=f"offers {len(PAYLOAD):,} bytes but the manifest pins "
                                         f"{len(PAYLOAD) - 1:,} for {tmp_path / 'sub' / 'test.bin'}"):
        fetch(pinned, directory=tmp_path)
    assert not list((tmp_path / "sub").iterdir())


def test_size_only_and_unpinned_entries_still_install(server, tmp_path):
    size_only = ModelEntry(name="a", file="a.bin", url=f"{server}/a.bin", backend="x", size=len(PAYLOAD))
    nothing = ModelEntry(name="b", file="b.bin", url=f"{server}/b.bin", backend="x")
    assert fetch(size_only, directory=tmp_path).read_bytes() == PAYLOAD
    assert fetch(nothing, directory=tmp_path).read_bytes() == PAYLOAD
    assert (pinning(size_only), pinning(nothing), pinning(entry(server))) == (
        "size pinned", "not pinned", "sha256 pinned")


def test_verify_rehashes_what_is_installed(server, tmp_path):
    path = fetch(entry(server), directory=tmp_path)
    assert verify_installed(entry(server), tmp_path) == [(path, True, "sha256 matches")]
    tampered = bytearray(PAYLOAD)
    tampered[5] ^= 1
    path.write_bytes(bytes(tampered))  # same size: status still says installed, verify does not
    assert status(entry(server), tmp_path)[0]
    [(_, ok, word)] = verify_installed(entry(server), tmp_path)
    assert not ok and word == (f"sha256 {hashlib.sha256(bytes(tampered)).hexdigest()}, "
                               f"expected {hashlib.sha256(PAYLOAD).hexdigest()}")


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
    bad.write_text('[model.x]\nfile = "a"\nurl = "http://h/a"\nbackend = "b"\nsha256 = "ABC"\n')
    with pytest.raises(ManifestError, match=r"\[model\.x\]: sha256 must be 64 lower-case hex digits, not 'ABC'"):
        load_manifest(bad)


def test_shipped_pins_name_their_source_and_say_what_is_not_pinned():
    manifest = load_manifest()
    for entry in manifest.values():
        pins = [(entry.size, entry.sha256, entry.source)] + [(f.size, f.sha256, f.source) for f in entry.files]
        for size, sha, source in pins:
            if size is not None or sha:
                assert source, f"{entry.name}: a pinned size or sha256 must say where it was read"
    hashed = {name for name, e in manifest.items() if e.sha256}
    assert hashed == {"discogs-effnet-bs64-1", "genre_discogs400-discogs-effnet-1",
                      "mtg_jamendo_moodtheme-discogs-effnet-1", "mtg_jamendo_instrument-discogs-effnet-1"}
    assert all(manifest[n].size for n in hashed)  # a pinned hash comes with its length
    assert pinning(manifest["danceability-vggish-audioset-1"]) == "size pinned"
    assert pinning(manifest["music_flamingo_q8_0"]) == "not pinned"
    assert pinning(manifest["music_flamingo_hf"]).endswith("revision 'main' not pinned")


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
    with pytest.raises(FetchError, match=f"music_flamingo_hf/{shard}: checksum mismatch for .*/{shard}: "
                                         "expected sha256"):
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


def test_a_file_put_in_place_by_hand_is_used_and_flagged_and_fetch_replaces_it(server, tmp_path):
    """Not the pinned size (a stand-in, another upstream version): installed, said so; fetch replaces it."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "test.bin").write_bytes(b"mine")
    ok, word = status(entry(server), tmp_path)
    assert ok and word == f"4 bytes, not the {len(PAYLOAD):,} pinned: not the manifest's file " \
                          "(mirdeck models fetch replaces it)"
    assert fetch(entry(server), directory=tmp_path).read_bytes() == PAYLOAD


def test_folder_fetch_refetches_a_file_of_the_wrong_size(repo_server, tmp_path):
    entry = folder_entry(repo_server)
    fetch(entry, directory=tmp_path)
    tokenizer = tmp_path / "music-flamingo-hf" / "tokenizer_config.json"
    tokenizer.write_bytes(b"{}")  # its size is pinned in folder_entry
    RepoHandler.requests = []
    fetch(entry, directory=tmp_path)
    assert tokenizer.read_bytes() == REPO_FILES["tokenizer_config.json"]
    assert ("tokenizer_config.json", None) in RepoHandler.requests


def test_verify_says_what_it_could_not_check(server, tmp_path):
    size_only = ModelEntry(name="a", file="a.bin", url=f"{server}/a.bin", backend="x", size=len(PAYLOAD))
    nothing = ModelEntry(name="b", file="b.bin", url=f"{server}/b.bin", backend="x")
    for e in (size_only, nothing):
        fetch(e, directory=tmp_path)
    assert verify_installed(size_only, tmp_path) == [(tmp_path / "a.bin", True, "size matches; no sha256 pinned")]
    assert verify_installed(nothing, tmp_path) == [(tmp_path / "b.bin", None, "nothing pinned to check it against")]
