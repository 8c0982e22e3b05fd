"""The run store on fsspec: ``file://`` (and plain paths, PVCs), ``memory://`` and ``s3://``.

>>> store = open_store("memory://example")
>>> store.url
'memory:///example'

Every run, spec, attempt, committed result and artifact lives here (layout: DESIGN §6). Writes
are atomic and a step's result is committed exactly once, also under concurrent writers; how
each scheme does that lives in one module per scheme (``local``, ``memory``, ``s3``).
"""

from __future__ import annotations

from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.utils import get_protocol

from agentic.contracts import StepSpec, decode
from agentic.errors import ConfigError, DecodeError, StoreError, UnknownRunError
from agentic.settings import Settings, get_settings
from agentic.store.base import Writer
from agentic.store.local import LocalWriter
from agentic.store.memory import MemoryWriter
from agentic.store.runstore import RunStore
from agentic.store.s3 import S3Writer

__all__ = ["RunStore", "Writer", "load_spec", "open_run_store", "open_store"]

WRITERS: dict[str, type[LocalWriter] | type[MemoryWriter] | type[S3Writer]] = {
    "file": LocalWriter,
    "local": LocalWriter,
    "memory": MemoryWriter,
    "s3": S3Writer,
    "s3a": S3Writer,
}
"""Supported schemes. Others are refused: without atomic writes and an exactly-once commit,
a store would silently lose the guarantees the rest of agentic relies on."""


def open_store(url: str, *, max_doc_bytes: int | None = None, **storage_options: Any) -> RunStore:
    """Open the run store at ``url`` (a path, ``file://``, ``memory://`` or ``s3://bucket/prefix``).

    Args:
        url: where the store lives; nothing is created until the first write.
        max_doc_bytes: largest JSON document read or written; defaults to the
            ``AGENTIC_MAX_DOCUMENT_BYTES`` setting.
        **storage_options: passed to the fsspec filesystem (for S3: ``endpoint_url``, ``key``,
            ``secret``, ``client_kwargs`` …).

    Raises:
        ConfigError: an unsupported scheme, or a scheme whose package is not installed.
    """
    writer_cls = WRITERS.get(get_protocol(url))
    if writer_cls is None:
        raise ConfigError(
            f"unsupported run store URL {url!r}: use a path, file://, memory:// or s3://"
        )
    options = {**writer_cls.default_options, **storage_options}
    try:
        fs, root = url_to_fs(url, **options)
    except ImportError as exc:
        raise ConfigError(
            f"run store {url!r} needs an optional package: pip install 'agentic[s3]' ({exc})",
            cause=exc,
        ) from exc
    limit = max_doc_bytes if max_doc_bytes is not None else get_settings().max_document_bytes
    return RunStore(fs, root, writer_cls(fs), max_doc_bytes=limit)


def load_spec(spec_url: str, *, max_bytes: int | None = None, **storage_options: Any) -> StepSpec:
    """Read the StepSpec at ``spec_url`` (what ``RunStore.write_spec`` returned).

    S3 endpoints and credentials come from ``storage_options`` or the usual AWS environment
    (``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID`` …), since a URL cannot carry them.

    Raises:
        UnknownRunError: nothing at that URL.
        DecodeError: not a valid StepSpec, or larger than ``max_bytes``.
        StoreError: the store could not be read.
    """
    limit = max_bytes if max_bytes is not None else get_settings().max_message_bytes
    try:
        with fsspec.open(spec_url, "rb", **storage_options) as f:
            raw = f.read(limit + 1)
    except FileNotFoundError as exc:
        raise UnknownRunError(f"no step spec at {spec_url}", cause=exc) from exc
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {spec_url}: {exc}", cause=exc) from exc
    try:
        return decode(StepSpec, raw, max_bytes=limit)
    except DecodeError as exc:
        raise DecodeError(f"{spec_url}: {exc.message}", raw=exc.raw, cause=exc.cause) from exc


def open_run_store(settings: Settings) -> RunStore:
    """The run store of ``settings`` (``AGENTIC_RUN_STORE_URL``)."""
    return open_store(settings.run_store_url)
