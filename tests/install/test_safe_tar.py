"""Tar extraction keeps the "data" filter's guarantees on Pythons without it (Debian 12: 3.11.2)."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from tui.install.safe_tar import UnsafeArchive, extract_all

# The fallback runs everywhere; the built-in filter only where this Python has it.
PATHS = [False] + ([True] if hasattr(tarfile, "data_filter") else [])


def _tar(tmp_path: Path, build) -> Path:
    out = tmp_path / "a.tar"
    with tarfile.open(out, "w") as tar:
        build(tar)
    return out


def _add_file(tar: tarfile.TarFile, name: str, data: bytes = b"x", mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _add_link(tar: tarfile.TarFile, name: str, target: str, kind=tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tar.addfile(info)


def _extract(archive: Path, dest: Path, builtin: bool) -> None:
    dest.mkdir(exist_ok=True)
    with tarfile.open(archive) as tar:
        extract_all(tar, dest, tar.getmembers(), use_builtin_filter=builtin)


@pytest.mark.parametrize("builtin", PATHS)
def test_a_normal_tree_extracts_with_sane_modes(tmp_path, builtin):
    def build(tar):
        _add_file(tar, "src/a.c", b"int main;", 0o4777)
        _add_file(tar, "src/run.sh", b"#!/bin/sh", 0o755)
        _add_link(tar, "src/b.c", "a.c")
    _extract(_tar(tmp_path, build), tmp_path / "out", builtin)
    a = tmp_path / "out/src/a.c"
    assert a.read_bytes() == b"int main;"
    assert a.stat().st_mode & 0o7777 == 0o755  # setuid and world-write gone
    assert (tmp_path / "out/src/b.c").read_bytes() == b"int main;"


@pytest.mark.parametrize("builtin", PATHS)
@pytest.mark.parametrize("evil", [
    lambda t: _add_file(t, "../escaped"),
    lambda t: _add_file(t, "src/../../escaped"),
    lambda t: _add_link(t, "out-link", "/etc/passwd"),
    lambda t: _add_link(t, "rel-link", "../../escaped"),
    lambda t: _add_link(t, "hard", "/etc/passwd", tarfile.LNKTYPE),
], ids=["dotdot", "nested-dotdot", "symlink-abs", "symlink-out", "hardlink-out"])
def test_members_that_leave_the_tree_are_refused(tmp_path, builtin, evil):
    dest = tmp_path / "deep" / "out"
    dest.parent.mkdir()
    with pytest.raises(UnsafeArchive):
        _extract(_tar(tmp_path, evil), dest, builtin)
    assert not (tmp_path / "deep" / "escaped").exists() and not (tmp_path / "escaped").exists()


@pytest.mark.parametrize("builtin", PATHS)
def test_an_absolute_member_never_lands_outside(tmp_path, builtin):
    """The built-in filter strips the leading slash, the fallback refuses: either way, nothing escapes."""
    outside = tmp_path / "abs-target"
    archive = _tar(tmp_path, lambda t: _add_file(t, str(outside)))
    try:
        _extract(archive, tmp_path / "out", builtin)
    except UnsafeArchive:
        pass
    assert not outside.exists()


def test_a_device_file_is_refused_by_the_fallback(tmp_path):
    def build(tar):
        info = tarfile.TarInfo("dev")
        info.type = tarfile.CHRTYPE
        tar.addfile(info)
    with pytest.raises(UnsafeArchive, match="device"):
        _extract(_tar(tmp_path, build), tmp_path / "out", False)

