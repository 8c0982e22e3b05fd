"""The documents of a run store on fsspec: paths, size limits, errors, atomic writes.

:class:`DocumentStore` is what every part of :class:`~agentic.store.RunStore` stands on:
store-relative paths (from :mod:`agentic.names`) made absolute, JSON documents read and
written within the size limit, every filesystem error turned into a
:class:`~agentic.errors.StoreError` naming the URL, every write masked of secret values
(:mod:`agentic.redact`) and done by the scheme's :class:`~agentic.store.base.Writer`.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel

from agentic import redact
from agentic.contracts import decode, encode
from agentic.errors import DecodeError, DocumentTooLargeError, StoreError
from agentic.ids import check_id, is_safe_id
from agentic.store.base import Writer

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
R = TypeVar("R")


class DocumentStore:
    """Documents at one fsspec location.

    Args:
        fs: the filesystem.
        root: the store's root path on ``fs`` (as fsspec strips it from the URL).
        writer: atomic writes for this kind of filesystem.
        max_doc_bytes: largest JSON document read or written (``settings.max_document_bytes``).
    """

    def __init__(
        self, fs: AbstractFileSystem, root: str, writer: Writer, *, max_doc_bytes: int
    ) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.writer = writer
        self.max_doc_bytes = max_doc_bytes

    def __repr__(self) -> str:
        return f"RunStore({self.url!r})"

    @property
    def url(self) -> str:
        """The store's URL, with its scheme (``file://…``, ``memory://…``, ``s3://…``)."""
        return str(self.fs.unstrip_protocol(self.root or "/"))

    # --- small documents ---------------------------------------------------------------

    def read_json(self, path: str) -> Any:
        """A JSON document at a store-relative path (from :mod:`agentic.names`); None if absent."""
        rel = safe_relpath(path)
        raw = self._read_bytes(rel, limit=self.max_doc_bytes)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError as exc:
            url = self._url(self._abs(rel))
            raise DecodeError(f"{url}: invalid JSON: {exc}", raw=raw, cause=exc) from exc

    def write_json(self, path: str, obj: Any) -> None:
        """Atomically write ``obj`` (JSON-serializable, or a pydantic model) at ``path``."""
        rel = safe_relpath(path)
        data = encode(obj) if isinstance(obj, BaseModel) else json.dumps(obj).encode()
        self._write_doc(rel, data)

    # --- documents at paths from agentic.names (their ids already checked) ------------

    def read_model(self, path: str, cls: type[M]) -> M | None:
        """The document at ``path`` (built by :mod:`agentic.names`) as ``cls``; None if absent."""
        return self._read_doc(path, cls)

    def write_model(self, path: str, model: BaseModel) -> None:
        """Atomically write ``model`` at ``path`` (built by :mod:`agentic.names`)."""
        self._write_doc(path, encode(model))

    def delete_doc(self, path: str) -> bool:
        """Remove the document at ``path`` (built by :mod:`agentic.names`); False if absent."""
        target = self._abs(path)
        with self._io("delete", target):
            try:
                self.fs.rm_file(target)
            except FileNotFoundError:
                return False
        return True

    def list_names(self, path: str, *, dirs: bool) -> list[str]:
        """Names of the children of the folder at ``path`` (built by :mod:`agentic.names`),
        sorted; hidden names (temporary files) left out."""
        return sorted(n for n in self._list_raw(path, dirs=dirs) if not n.startswith("."))

    def read_many(
        self, read: Callable[[T], R], items: Iterable[T], *, ordered: bool = False
    ) -> Iterator[R]:
        """``read`` each item, in order; on a remote store several round trips overlap
        (``ordered``: a few at a time, for a caller that may stop early)."""
        items = list(items)
        workers = min(self.writer.read_concurrency, len(items))
        if workers <= 1:
            yield from (read(item) for item in items)
            return
        chunk = workers if ordered else len(items)
        with ThreadPoolExecutor(workers, thread_name_prefix="agentic-read") as pool:
            for start in range(0, len(items), chunk):
                yield from pool.map(read, items[start : start + chunk])

    # --- internals ---------------------------------------------------------------------

    def _abs(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def _url(self, path: str) -> str:
        return str(self.fs.unstrip_protocol(path))

    @contextmanager
    def _io(self, action: str, path: str) -> Iterator[None]:
        """Turn the filesystem's own errors into a :class:`StoreError` naming the URL."""
        try:
            yield
        except self.writer.io_errors as exc:
            raise StoreError(f"cannot {action} {self._url(path)}: {exc}", cause=exc) from exc

    def _read_bytes(self, rel: str, *, limit: int | None) -> bytes | None:
        path = self._abs(rel)
        with self._io("read", path):
            try:
                if limit is None:
                    return bytes(self.fs.cat_file(path))
                # Read one byte past the limit: enough to know the file is too large.
                data = self._read_prefix(path, limit + 1)
            except FileNotFoundError:
                return None
        if len(data) > limit:
            raise DecodeError(
                f"{self._url(path)}: larger than the limit of {limit} bytes "
                "(setting AGENTIC_MAX_DOCUMENT_BYTES)",
                raw=data[:1024],
            )
        return data

    def _read_prefix(self, path: str, size: int) -> bytes:
        """At most ``size`` bytes from the start of a file, in one request."""
        try:
            return bytes(self.fs.cat_file(path, start=0, end=size))
        except FileNotFoundError:
            raise
        except OSError:
            # S3 refuses every byte range of an empty object (416 InvalidRange).
            if self.fs.size(path) == 0:
                return b""
            raise

    def _read_doc(self, rel: str, cls: type[M]) -> M | None:
        raw = self._read_bytes(rel, limit=self.max_doc_bytes)
        if raw is None:
            return None
        try:
            return decode(cls, raw)
        except DecodeError as exc:
            url = self._url(self._abs(rel))
            raise DecodeError(f"{url}: {exc.message}", raw=exc.raw, cause=exc.cause) from exc

    def _write_doc(self, rel: str, data: bytes, *, exclusive: bool = False) -> bool:
        self._check_size(rel, data)
        return self._write_bytes(rel, data, exclusive=exclusive)

    def _check_size(self, rel: str, data: bytes) -> None:
        if len(data) > self.max_doc_bytes:
            raise DocumentTooLargeError(
                f"{self._url(self._abs(rel))}: document of {len(data)} bytes exceeds the limit "
                f"of {self.max_doc_bytes} bytes (setting AGENTIC_MAX_DOCUMENT_BYTES)"
            )

    def _write_bytes(self, rel: str, data: bytes, *, exclusive: bool = False) -> bool:
        """Write ``data`` at ``rel``, secret values masked (:mod:`agentic.redact`): whatever
        a step, a model or a user put in it, no credential of this process lands here."""
        data = redact.current().bytes(data)
        path = self._abs(rel)
        with self._io("write", path):
            if exclusive:
                return self.writer.create(path, data)
            self.writer.write(path, data)
            return True

    def _list(self, rel: str, *, dirs: bool) -> list[str]:
        """Names of the safe-id children of a folder (directories or files), sorted."""
        # Temp files (".name.tmp") and anything else that is not an id are not ours to show.
        return sorted(name for name in self._list_raw(rel, dirs=dirs) if is_safe_id(name))

    def _list_raw(self, rel: str, *, dirs: bool) -> list[str]:
        """Names of the children of a folder (directories or files)."""
        path = self._abs(rel)
        found: Iterable[str]
        with self._io("list", path):
            try:
                if isinstance(self.fs, LocalFileSystem):
                    # One readdir, no stat per entry (fsspec's detailed ls stats each one):
                    # listing the runs of a long history is 10x cheaper.
                    with os.scandir(path) as scan:
                        found = [e.name for e in scan if e.is_dir() is dirs]
                else:
                    entries = self.fs.ls(path, detail=True)
                    kind = "directory" if dirs else "file"
                    found = [
                        posixpath.basename(e["name"].rstrip("/"))
                        for e in entries
                        if e["type"] == kind
                    ]
            except (FileNotFoundError, NotADirectoryError):
                return []
        return list(found)


def safe_relpath(path: str) -> str:
    """Check every segment of a store-relative path, so it cannot leave the store."""
    parts = path.split("/")
    for part in parts:
        check_id(part, "store path segment")
    return "/".join(parts)
