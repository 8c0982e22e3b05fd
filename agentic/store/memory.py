"""fsspec's ``memory://`` filesystem: one process-global dict, so one lock is enough."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from fsspec import AbstractFileSystem

# The memory filesystem is shared by every instance in the process, so the lock must be too.
_CREATE_LOCK = threading.Lock()


class MemoryWriter:
    """``pipe_file`` builds the whole file and then stores it with one dict assignment."""

    default_options: ClassVar[dict[str, Any]] = {}
    read_concurrency: ClassVar[int] = 1
    io_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, fs: AbstractFileSystem) -> None:
        self.fs = fs

    def write(self, path: str, data: bytes) -> None:
        self.fs.pipe_file(path, data)

    def create(self, path: str, data: bytes) -> bool:
        with _CREATE_LOCK:
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, data)
            return True

    def create_from(self, source: str, path: str, data: bytes) -> bool:
        return self.create(path, data)
