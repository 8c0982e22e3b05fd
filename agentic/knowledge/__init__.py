"""The knowledge base the planner learns from: earlier runs' outputs and added documents,
and the providers' track records (docs/planner.md).

* :mod:`agentic.knowledge.index`: the SQLite FTS5 index, derived from the run store;
* :mod:`agentic.knowledge.records`: track records aggregated from the indexed attempts;
* here: where the index lives, and the documents of ``agentic kb add``, which are kept in
  the store (``kb/docs/<doc_id>.json``: the file's name, where it came from, its text) so
  that any machine can rebuild the index from the store alone.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from agentic.errors import ConfigError
from agentic.knowledge.index import PRIVATE_LABEL, KnowledgeIndex, Match, fts_query, is_private
from agentic.knowledge.records import TrackRecord, track_records
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.store import RunStore

__all__ = [
    "PRIVATE_LABEL",
    "KnowledgeIndex",
    "Match",
    "TrackRecord",
    "add_document",
    "fts_query",
    "index_path",
    "is_private",
    "list_documents",
    "open_index",
    "read_document_text",
    "rebuild",
    "remove_document",
    "track_records",
]

DOCS_DIR = "kb/docs"
TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".rst"})
MAX_DOCUMENT_CHARS = 400_000
"""Characters of a document kept (a store document is at most AGENTIC_MAX_DOCUMENT_BYTES)."""


def index_path(settings: Settings, store: RunStore) -> Path:
    """Where the index of ``store`` lives (``AGENTIC_KB_INDEX_PATH``, see the setting; a
    ``memory://`` store's, in this process's temporary folder)."""
    if settings.kb_index_path:
        return Path(settings.kb_index_path)
    if isinstance(store.fs, LocalFileSystem):
        return Path(store.root) / "kb" / "index.sqlite3"
    digest = hashlib.sha256(store.url.encode()).hexdigest()[:16]
    if isinstance(store.fs, MemoryFileSystem):  # gone with the process: so is its index
        return Path(tempfile.gettempdir()) / f"agentic-kb-{os.getpid()}" / f"{digest}.sqlite3"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "agentic" / "kb" / f"{digest}.sqlite3"


def open_index(settings: Settings, store: RunStore, *, refresh: bool = True) -> KnowledgeIndex:
    """The index of ``store``, brought up to date with it (documents included) unless
    ``refresh`` is False."""
    index = KnowledgeIndex(index_path(settings, store))
    if refresh:
        _sync_documents(index, store)
        index.refresh(store)
    return index


def rebuild(settings: Settings, store: RunStore) -> KnowledgeIndex:
    """Throw the index away and build it again from the store."""
    path = index_path(settings, store)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return open_index(settings, store)


def read_document_text(path: Path) -> str:
    """The text of a text, Markdown or PDF file.

    Raises:
        ConfigError: unreadable, of another kind, or without any text.
    """
    suffix = path.suffix.lower()
    try:
        if suffix in TEXT_SUFFIXES:
            text = path.read_text(encoding="utf-8", errors="replace")
        elif suffix == ".pdf":
            text = _pdf_text(path)
        else:
            raise ConfigError(
                f"{path}: not a text, Markdown or PDF file (.txt, .md, .markdown, .rst, .pdf)"
            )
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}", cause=exc) from exc
    if not text.strip():
        raise ConfigError(f"{path}: no text in it")
    return text[:MAX_DOCUMENT_CHARS]


def _pdf_text(path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except PdfReadError as exc:
        raise ConfigError(f"{path}: not a readable PDF: {exc}", cause=exc) from exc


def document_id(path: Path) -> str:
    """A document's id: its name and a digest of its absolute path (the same file added
    again replaces itself; two files of one name stay two)."""
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    stem = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "-" for c in path.stem)
    stem = stem[:60].strip("-_")
    return f"{stem or 'doc'}-{digest}"


def add_document(store: RunStore, index: KnowledgeIndex, path: Path) -> dict[str, Any]:
    """Keep ``path``'s text in the store and index it; returns the stored document."""
    text = read_document_text(path)
    doc_id = document_id(path)
    doc: dict[str, Any] = {
        "doc_id": doc_id,
        "name": path.name,
        "path": str(path.resolve()),
        "added_at": datetime.now(UTC).isoformat(),
        "chars": len(text),
        "text": text,
    }
    store.write_json(f"{DOCS_DIR}/{doc_id}.json", doc)
    index.add_document(doc_id, path.name, text)
    return doc


def list_documents(store: RunStore) -> list[dict[str, Any]]:
    """The stored documents (without their text), by name."""
    found = []
    for doc_id in store.list_json(DOCS_DIR):
        doc = store.read_json(f"{DOCS_DIR}/{doc_id}.json")
        if isinstance(doc, dict):
            found.append({k: v for k, v in doc.items() if k != "text"})
    return sorted(found, key=lambda d: (str(d.get("name")), str(d.get("doc_id"))))


def remove_document(store: RunStore, index: KnowledgeIndex, ref: str) -> list[str]:
    """Remove the documents whose id, name or path is ``ref``; their ids."""
    removed = []
    for doc in list_documents(store):
        if ref in (doc.get("doc_id"), doc.get("name"), doc.get("path")):
            doc_id = str(doc["doc_id"])
            store.delete_json(f"{DOCS_DIR}/{doc_id}.json")
            index.remove_document(doc_id)
            removed.append(doc_id)
    return removed


def _sync_documents(index: KnowledgeIndex, store: RunStore) -> None:
    """Index documents another machine added to the store, forget removed ones."""
    stored = set(store.list_json(DOCS_DIR))
    indexed = index.document_ids()
    for doc_id in indexed - stored:
        index.remove_document(doc_id)
    for doc_id in stored - indexed:
        doc = store.read_json(f"{DOCS_DIR}/{doc_id}.json")
        if isinstance(doc, dict) and isinstance(doc.get("text"), str):
            index.add_document(doc_id, str(doc.get("name") or doc_id), doc["text"])
