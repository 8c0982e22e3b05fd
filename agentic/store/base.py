"""The two things fsspec does not give uniformly: atomic replace and create-if-absent.

Each URL scheme gets a small :class:`Writer` (``local.py``, ``memory.py``, ``s3.py``); the
:class:`~agentic.store.runstore.RunStore` does everything else through plain fsspec calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem


class Writer(Protocol):
    """How one kind of filesystem writes whole files."""

    #: Storage options this scheme needs unless the caller overrides them.
    default_options: ClassVar[dict[str, Any]]
    #: Exceptions of this filesystem that mean "the store failed" (become ``StoreError``).
    io_errors: tuple[type[BaseException], ...]
    #: How many small documents to read at once when reading many (``list_runs``): 1 where
    #: a read is a page-cache copy, more where each is a network round trip.
    read_concurrency: ClassVar[int]

    def write(self, path: str, data: bytes) -> None:
        """Replace ``path`` with ``data`` so that no reader ever sees a partial file."""

    def create(self, path: str, data: bytes) -> bool:
        """Write ``path`` only if it does not exist, atomically with respect to other writers.

        Returns:
            True when this call created the file, False when it already existed.
        """

    def create_from(self, source: str, path: str, data: bytes) -> bool:
        """:meth:`create` of ``path`` when ``source`` is a complete file holding ``data``.

        A filesystem with hard links makes ``path`` a second name of ``source`` (no second
        write); the others write ``data``.

        Returns:
            True when this call created the file, False when it already existed.
        """


class FsWriter:
    """What the writers share unless their filesystem says otherwise: no storage options of
    their own, one read at a time, ``OSError`` as the store failing, and :meth:`create_from`
    writing the bytes again (only local files can give a file a second name)."""

    default_options: ClassVar[dict[str, Any]] = {}
    read_concurrency: ClassVar[int] = 1
    io_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, fs: AbstractFileSystem) -> None:
        self.fs = fs

    def create(self, path: str, data: bytes) -> bool:
        raise NotImplementedError

    def create_from(self, source: str, path: str, data: bytes) -> bool:
        return self.create(path, data)
