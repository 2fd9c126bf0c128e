"""The .INFO store: merge, atomic replace, broken files moved aside, concurrent writers."""
from __future__ import annotations

import json
import multiprocessing

import pytest

from tui.run import store


def test_merge_keeps_other_keys_and_records_provenance(tmp_path):
    folder = tmp_path / "Artist - Title"
    folder.mkdir()
    (folder / "Artist - Title.INFO").write_text(json.dumps({"caption": "hand-written", "bpm": 120.5}))
    store.merge(folder, "loudness", features={"lufs": -9.5}, provenance={"status": "ok", "version": "1"})
    data = store.read_info(folder / "Artist - Title.INFO")
    assert data["caption"] == "hand-written" and data["bpm"] == 120.5 and data["lufs"] == -9.5
    assert data["_mirdeck"]["loudness"] == {"status": "ok", "version": "1"}
    assert list(data)[-1] == "_mirdeck"
    assert [p.name for p in folder.iterdir()] == ["Artist - Title.INFO"]  # no temp or lock files left


def test_non_finite_values_and_reserved_keys_are_refused(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    with pytest.raises(ValueError, match="non-finite value for lufs"):
        store.merge(folder, "m", features={"lufs": float("nan")}, provenance={})
    with pytest.raises(ValueError, match="non-finite value for probs.rock"):
        store.merge(folder, "m", features={"probs": {"rock": float("inf")}}, provenance={})
    with pytest.raises(ValueError, match="reserved"):
        store.merge(folder, "m", features={"_secret": 1}, provenance={})
    assert not (folder / "t.INFO").exists()


@pytest.mark.parametrize("content", ['{"a": 1', "[1, 2, 3]", "\xff\xfe not utf8"])
def test_broken_info_is_moved_aside(tmp_path, content):
    folder = tmp_path / "t"
    folder.mkdir()
    path = folder / "t.INFO"
    path.write_bytes(content.encode("latin-1"))
    outcome = store.merge(folder, "m", features={"x": 1}, provenance={"status": "ok"})
    assert outcome.moved_aside is not None and outcome.moved_aside.read_bytes() == content.encode("latin-1")
    assert store.read_info(path)["x"] == 1


def _writer(folder: str, module: str, count: int) -> None:
    from pathlib import Path

    for i in range(count):
        store.merge(Path(folder), module, features={f"{module}_{i}": i}, provenance={"status": "ok", "n": i})


def test_two_processes_never_lose_an_update(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(folder), name, 150)) for name in ("a", "b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    data = store.read_info(folder / "t.INFO")
    assert all(f"{m}_{i}" in data for m in "ab" for i in range(150))
    assert data["_mirdeck"]["a"]["n"] == 149 and data["_mirdeck"]["b"]["n"] == 149


def test_failure_after_success_keeps_values_and_adds_last_error(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    store.merge(folder, "m", features={"x": 1}, provenance={"status": "ok", "version": "1"})
    store.merge(folder, "m", features=None, provenance={"status": "error", "error": {"kind": "bad_input"}})
    data = store.read_info(folder / "t.INFO")
    assert data["x"] == 1 and data["_mirdeck"]["m"]["status"] == "ok"
    assert data["_mirdeck"]["m"]["last_error"]["error"]["kind"] == "bad_input"


def test_missing_folder_is_a_store_error(tmp_path):
    with pytest.raises(store.StoreError, match="cannot open track folder"):
        store.merge(tmp_path / "gone", "m", features={"x": 1}, provenance={})
