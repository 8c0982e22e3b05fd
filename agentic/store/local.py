"""Local files (plain paths, ``file://``, a mounted PVC): temp file, fsync, rename or link.

The store holds prompts, model outputs and artifacts, so it is its owner's alone: every file
is created with mode 0600 and every folder the store creates (the root, any missing folder
above it, and each one inside) with 0700, whatever the process's umask. A committed result
is a hard link of its attempt's file, so it has the same mode. Folders and files that
existed before are left as they are.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets

from agentic.store.base import FsWriter

# Temp file names: unique per process (pid and a random tag, for stores shared between
# machines) and per write (a counter); no random draw, which is a system call, per write.
_TMP_TAG = secrets.token_hex(4)
_tmp_numbers = itertools.count()

# Explicit modes, not left to the umask: a permissive umask (0, 002) must not make prompts
# and outputs readable by other users. The umask can only remove bits from these.
FILE_MODE = 0o600
DIR_MODE = 0o700


class LocalWriter(FsWriter):
    """Atomic writes with POSIX renames; create-if-absent with ``link(2)``.

    ``os.link`` fails with ``FileExistsError`` when the target exists, and the file it links
    is already complete, so the first writer wins and no reader sees a partial result, across
    threads and processes (and on NFS, where ``O_EXCL`` was historically unreliable).
    """

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

    def create_from(self, source: str, path: str, data: bytes) -> bool:
        # ``source`` was written by write(): complete and fsync'd. A second name for it costs
        # a link and a directory fsync instead of writing and syncing the same bytes again;
        # a later write() of ``source`` replaces its name with a new file, so ``path`` keeps
        # these bytes.
        try:
            os.link(source, path)
        except FileExistsError:
            return False
        except FileNotFoundError:  # ``source`` is gone: write the bytes after all
            return self.create(path, data)
        _fsync_dir(os.path.dirname(path))
        return True


def _write_temp(path: str, data: bytes) -> str:
    """Write ``data`` to a hidden, uniquely named file next to ``path`` and fsync it."""
    parent, name = os.path.split(path)
    tmp = os.path.join(parent, f".{name}.{os.getpid()}-{_TMP_TAG}-{next(_tmp_numbers)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(tmp, flags, FILE_MODE)
    except FileNotFoundError:  # a new folder: most writes replace a file in an existing one
        _make_dirs(parent)
        fd = os.open(tmp, flags, FILE_MODE)
    try:
        try:
            # Plain descriptor calls: a file object would add system calls of its own.
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _make_dirs(path: str) -> None:
    """``os.makedirs(path, DIR_MODE, exist_ok=True)`` that tries the folder itself first.

    A new file's folder is most often missing alone (``attempts/``): one ``mkdir`` then,
    where ``os.makedirs`` checks the parent first. Every folder it makes, parents included,
    gets :data:`DIR_MODE`.
    """
    try:
        os.mkdir(path, DIR_MODE)
    except FileNotFoundError:
        parent = os.path.dirname(path)
        if parent in ("", path):
            raise
        _make_dirs(parent)
        with contextlib.suppress(FileExistsError):  # made meanwhile by another writer
            os.mkdir(path, DIR_MODE)
    except FileExistsError:
        pass


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
