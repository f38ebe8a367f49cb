"""Volume data on disk: digests, forks, snapshot tarballs and restores.

A digest is the sha256 of a volume's tree: every directory, symlink and file (path and
content hash) in sorted order, ignoring modes and times. A fork and its source, or a
snapshot and the volume restored from it, therefore have equal digests when their files
are equal. Snapshot tarballs are written from the same bytes the digest was taken from.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["copy_tree", "restore_tar", "tree_digest", "tree_size", "write_snapshot"]


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = base / name
            yield path.relative_to(root).as_posix(), path


def _entries(root: Path) -> Iterator[tuple[str, Path, str, bytes]]:
    """Yield (relative path, path, kind, payload) for every entry, in digest order."""
    for rel, path in _walk(root):
        if path.is_symlink():
            yield rel, path, "l", os.readlink(path).encode()
        elif path.is_dir():
            yield rel, path, "d", b""
        elif path.is_file():
            try:
                yield rel, path, "f", path.read_bytes()
            except FileNotFoundError:
                # A file deleted mid-walk (a SQLite journal) simply is not in the copy.
                continue


def _update(h: hashlib._Hash, rel: str, kind: str, payload: bytes) -> None:
    detail = hashlib.sha256(payload).hexdigest() if kind == "f" else payload.decode()
    h.update(f"{kind} {rel} {detail}\n".encode())


def tree_digest(root: Path) -> tuple[str, int]:
    """Return (``sha256:<hex>``, total file bytes) of a directory tree."""
    h = hashlib.sha256()
    size = 0
    if root.exists():
        for rel, _, kind, payload in _entries(root):
            _update(h, rel, kind, payload)
            size += len(payload) if kind == "f" else 0
    return "sha256:" + h.hexdigest(), size


def tree_size(root: Path) -> int:
    """Return the bytes of the files under ``root``."""
    total = 0
    for _, path in _walk(root) if root.exists() else ():
        if path.is_file() and not path.is_symlink():
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                continue
    return total


def write_snapshot(root: Path, tar_path: Path) -> tuple[str, int]:
    """Write ``root`` to a tarball; return its digest and bytes, as ``tree_digest`` would."""
    h = hashlib.sha256()
    size = 0
    tmp = tar_path.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        if root.exists():
            for rel, path, kind, payload in _entries(root):
                _update(h, rel, kind, payload)
                info = tar.gettarinfo(str(path), arcname=rel)
                if kind == "f":
                    info.size = len(payload)
                    size += len(payload)
                    tar.addfile(info, io.BytesIO(payload))
                else:
                    tar.addfile(info)
    tmp.replace(tar_path)
    return "sha256:" + h.hexdigest(), size


def restore_tar(tar_path: Path, dest: Path) -> None:
    """Unpack a snapshot into ``dest`` (the ``data`` filter keeps it inside)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest, filter="data")


def copy_tree(src: Path, dest: Path) -> None:
    """Copy a volume's data into a new volume (a fork): independent afterwards."""
    dest.mkdir(parents=True, exist_ok=True)
    if not src.exists():
        return
    try:
        shutil.copytree(src, dest, symlinks=True, dirs_exist_ok=True)
    except shutil.Error as exc:
        # A running machine may delete files while we copy (SQLite removes its -wal and -shm
        # on a clean close); a vanished file is what a crash-consistent copy would not hold.
        lost = [err for err in exc.args[0] if not _vanished(err[0])]
        if lost:
            raise


def _vanished(path: str) -> bool:
    return not Path(path).exists()
