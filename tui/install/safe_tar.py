"""Extract a tar archive without letting a member land outside the target folder.

``TarFile.extractall(filter="data")`` does this from Python 3.11.4 on; Debian 12 ships 3.11.2,
where the keyword does not exist. There the same rules are applied here before extraction: no
absolute names, no ``..``, no links that point out of the tree, no device files or fifos, and no
setuid/setgid/sticky or group/other-write bits.
"""
from __future__ import annotations

import os
import tarfile
from collections.abc import Iterable
from pathlib import Path


class UnsafeArchive(Exception):
    pass


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, path]) == root


def check_member(member: tarfile.TarInfo, dest: Path) -> tarfile.TarInfo:
    """The member as it may be extracted into dest, or UnsafeArchive saying why not."""
    root = os.path.realpath(dest)
    name = member.name
    if name.startswith(("/", os.sep)) or os.path.isabs(name):
        raise UnsafeArchive(f"{name}: absolute path in archive")
    target = os.path.realpath(os.path.join(root, name))
    if ".." in Path(name).parts or not _inside(root, target):
        raise UnsafeArchive(f"{name}: path leaves the extraction folder")
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise UnsafeArchive(f"{name}: device or fifo in archive")
    if member.issym():
        link = member.linkname
        if os.path.isabs(link):
            raise UnsafeArchive(f"{name}: symlink to absolute path {link}")
        if not _inside(root, os.path.realpath(os.path.join(os.path.dirname(target), link))):
            raise UnsafeArchive(f"{name}: symlink {link} points out of the extraction folder")
    if member.islnk():
        link = member.linkname
        if os.path.isabs(link) or not _inside(root, os.path.realpath(os.path.join(root, link))):
            raise UnsafeArchive(f"{name}: hard link {link} points out of the extraction folder")
    # Owned by whoever extracts (as the "data" filter does), not by the archive's uid when root.
    member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
    if member.isfile() or member.isdir():
        # What the "data" filter keeps: the owner's bits, no special bits, nothing writable by others.
        member.mode = (member.mode & 0o755) | (0o600 if member.isfile() else 0o700)
    return member


def extract_all(tar: tarfile.TarFile, dest: Path, members: Iterable[tarfile.TarInfo],
                *, use_builtin_filter: bool | None = None) -> None:
    """Extract members into dest with the "data" filter's guarantees on every Python 3.11."""
    members = list(members)
    builtin = hasattr(tarfile, "data_filter") if use_builtin_filter is None else use_builtin_filter
    if builtin:
        try:
            tar.extractall(dest, members=members, filter="data")
        except tarfile.FilterError as exc:
            raise UnsafeArchive(str(exc)) from exc
        return
    checked = [check_member(m, dest) for m in members]
    tar.extractall(dest, members=checked)
