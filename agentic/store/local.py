"""Local files (plain paths, ``file://``, a mounted PVC): temp file, fsync, rename or link."""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import Any, ClassVar

from fsspec import AbstractFileSystem


class LocalWriter:
    """Atomic writes with POSIX renames; create-if-absent with ``link(2)``.

    ``os.link`` fails with ``FileExistsError`` when the target exists, and the file it links
    is already complete, so the first writer wins and no reader sees a partial result, across
    threads and processes (and on NFS, where ``O_EXCL`` was historically unreliable).
    """

    default_options: ClassVar[dict[str, Any]] = {}
    io_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, fs: AbstractFileSystem) -> None:
        self.fs = fs

    def write(self, path: str, data: bytes) -> None:
        tmp = _write_temp(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            _unlink(tmp)
            raise
        _fsync_dir(os.path.dirname(path))

    def create(self, path: str, data: bytes) -> bool:
        tmp = _write_temp(path, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            _unlink(tmp)
        _fsync_dir(os.path.dirname(path))
        return True


def _write_temp(path: str, data: bytes) -> str:
    """Write ``data`` to a hidden, uniquely named file next to ``path`` and fsync it."""
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{name}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide permissions, as a plain open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _fsync_dir(path: str) -> None:
    """Make a rename durable; some filesystems cannot open directories, which is fine."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
