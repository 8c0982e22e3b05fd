"""fsspec's ``memory://`` filesystem: one process-global dict, so one lock is enough."""

from __future__ import annotations

import threading

from agentic.store.base import FsWriter

# The memory filesystem is shared by every instance in the process, so the lock must be too.
_CREATE_LOCK = threading.Lock()


class MemoryWriter(FsWriter):
    """``pipe_file`` builds the whole file and then stores it with one dict assignment."""

    def write(self, path: str, data: bytes) -> None:
        self.fs.pipe_file(path, data)

    def create(self, path: str, data: bytes) -> bool:
        with _CREATE_LOCK:
            if self.fs.exists(path):
                return False
            self.fs.pipe_file(path, data)
            return True
