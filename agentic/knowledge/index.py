"""The knowledge index: SQLite FTS5 (BM25) over finished runs, their steps and documents,
plus every attempt's figures for the providers' track records.

The run store is the source of truth; the index is derived from it and can be rebuilt at
any time (``agentic kb rebuild``). :meth:`KnowledgeIndex.refresh` brings it up to date: it
lists the store's run ids (a listing, no document read), and reads only the runs it has not
indexed yet. A run is indexed once it has ended; until then it is looked at again on the
next refresh. Refreshing is cheap when nothing is new, so every reader refreshes first (a
planner, ``agentic kb search``, ``agentic stats``) and a local ``agentic run`` refreshes
when its run ends: the index follows the runs as they finish, on every backend.

What goes in:

* ``run``: a succeeded run's output, titled with its goal (or workflow name);
* ``step``: each step output the run paid for (not a reused one), titled with the task;
* ``doc``: documents added with ``agentic kb add`` (kept in the store under ``kb/docs/``).

A run labelled ``private`` (any value but ``false``, ``0`` or ``no``) contributes no text:
only its attempts' figures, which hold none, count in the track records.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agentic.contracts import RunRecord, StepResult

if TYPE_CHECKING:
    from agentic.store import RunStore

PRIVATE_LABEL = "private"
"""A run with this label stays out of the knowledge index (docs/planner.md)."""
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    finished_at TEXT,
    private INTEGER NOT NULL,
    review_score REAL
);
CREATE TABLE IF NOT EXISTS documents (doc_id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS passages USING fts5(
    title, text, kind UNINDEXED, run_id UNINDEXED, step_id UNINDEXED, source UNINDEXED,
    tokenize = 'porter unicode61'
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL,
    step_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    provider TEXT NOT NULL,
    model TEXT,
    status TEXT NOT NULL,
    duration_s REAL,
    tokens INTEGER NOT NULL,
    cost_usd REAL,
    error TEXT,
    finished_at TEXT,
    PRIMARY KEY (run_id, step_id, attempt)
);
CREATE INDEX IF NOT EXISTS attempts_provider ON attempts (provider, finished_at);
CREATE INDEX IF NOT EXISTS attempts_duration ON attempts (provider, duration_s);
"""

_WORD = re.compile(r"[^\W_]{3,}", re.UNICODE)
_STOPWORDS = frozenset(
    (
        "the",
        "and",
        "for",
        "with",
        "that",
        "this",
        "from",
        "into",
        "what",
        "which",
        "when",
        "where",
        "will",
        "would",
        "should",
        "could",
        "about",
        "their",
        "there",
        "them",
        "they",
        "your",
        "you",
        "our",
        "are",
        "was",
        "were",
        "been",
        "being",
        "have",
        "has",
        "had",
        "not",
        "but",
        "all",
        "any",
        "can",
        "one",
        "two",
        "how",
        "why",
        "who",
        "its",
        "also",
        "more",
        "most",
        "than",
        "then",
        "such",
        "very",
        "just",
    )
)
MAX_QUERY_WORDS = 16


@dataclass(frozen=True)
class Match:
    """One passage found for a query.

    Attributes:
        kind: ``run``, ``step`` or ``doc``.
        source: What to cite: ``run <id>``, ``run <id> step <step>`` or ``document <path>``.
        title: The goal, task or document title.
        text: The passage (the whole indexed text).
        score: BM25 relevance (lower is better, as SQLite reports it).
        run_id: The run it came from (None for a document).
        step_id: The step it came from (``step`` matches only).
    """

    kind: str
    source: str
    title: str
    text: str
    score: float
    run_id: str | None = None
    step_id: str | None = None


def fts_query(text: str) -> str | None:
    """An FTS5 query matching any significant word of ``text`` (None: no word to look for).

    Words are quoted, so nothing in ``text`` is read as query syntax.
    """
    words: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word not in _STOPWORDS and word not in words:
            words.append(word)
        if len(words) == MAX_QUERY_WORDS:
            break
    if not words:
        return None
    return " OR ".join(f'"{word}"' for word in words)


def is_private(record: RunRecord) -> bool:
    """Whether ``record`` stays out of the knowledge index."""
    value = record.labels.get(PRIVATE_LABEL)
    return value is not None and value.strip().lower() not in ("false", "0", "no")


class KnowledgeIndex:
    """One SQLite file of passages and attempts (see the module docstring).

    Args:
        path: The SQLite file (created with its folder when missing); ``:memory:`` for a
            throwaway index.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False)
        self._lock = threading.RLock()
        with self._lock, self._db:
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> KnowledgeIndex:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, for queries of this package (one thread at a time)."""
        with self._lock:
            yield self._db

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db:  # one transaction
            yield self._db

    # --- runs ------------------------------------------------------------------------------

    def indexed_runs(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT run_id FROM runs")}

    def refresh(self, store: RunStore) -> int:
        """Index the store's runs that ended since the last refresh; how many were added."""
        known = self.indexed_runs()
        added = 0
        for run_id in store.list_run_ids():
            if run_id in known:
                continue
            try:
                record = store.read_run(run_id)
            except Exception:  # a damaged or half-written run: looked at again next time
                continue
            if record.is_terminal:
                self.add_run(store, record)
                added += 1
        return added

    def add_run(self, store: RunStore, record: RunRecord) -> None:
        """Index one ended run: its output, its steps' outputs, every attempt's figures."""
        private = is_private(record)
        workflow = record.workflow
        goal = record.request.goal
        title = goal or (workflow.name if workflow else record.run_id)
        passages: list[tuple[str, str, str, str, str | None, str]] = []
        attempts: list[tuple[object, ...]] = []
        if record.status == "succeeded" and record.output and not private:
            source = f"run {record.run_id}"
            passages.append((title, record.output, "run", record.run_id, None, source))
        for step_id in workflow.task_sequence if workflow else []:
            task = workflow.task(step_id) if workflow else None
            for result in store.read_attempts(record.run_id, step_id):
                if result.reused_from is not None:
                    continue
                attempts.append(_attempt_row(record, result))
                if result.status == "succeeded" and result.output and not private:
                    task_title = (task.description if task else step_id).strip()[:200]
                    source = f"run {record.run_id} step {step_id}"
                    passages.append(
                        (task_title, result.output, "step", record.run_id, step_id, source)
                    )
        review = (record.review or {}).get("score") if record.review else None
        with self._writing() as db:
            db.execute("DELETE FROM passages WHERE run_id = ? AND kind != 'doc'", (record.run_id,))
            db.execute("DELETE FROM attempts WHERE run_id = ?", (record.run_id,))
            db.executemany(
                "INSERT INTO passages (title, text, kind, run_id, step_id, source) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                passages,
            )
            db.executemany(
                "INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                attempts,
            )
            db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?)",
                (
                    record.run_id,
                    record.status,
                    record.finished_at.isoformat() if record.finished_at else None,
                    int(private),
                    float(review) if isinstance(review, int | float) else None,
                ),
            )

    def forget_run(self, run_id: str) -> None:
        """Drop a run from the index (it was removed from the store)."""
        with self._writing() as db:
            db.execute("DELETE FROM passages WHERE run_id = ? AND kind != 'doc'", (run_id,))
            db.execute("DELETE FROM attempts WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))

    # --- documents -------------------------------------------------------------------------

    def add_document(self, doc_id: str, title: str, text: str) -> None:
        """Index a document (replacing an earlier one of the same id)."""
        with self._writing() as db:
            db.execute("DELETE FROM passages WHERE kind = 'doc' AND step_id = ?", (doc_id,))
            db.execute(
                "INSERT INTO passages (title, text, kind, run_id, step_id, source) "
                "VALUES (?, ?, 'doc', NULL, ?, ?)",
                (title, text, doc_id, f"document {title}"),
            )
            db.execute("INSERT OR REPLACE INTO documents VALUES (?, ?)", (doc_id, title))

    def remove_document(self, doc_id: str) -> None:
        with self._writing() as db:
            db.execute("DELETE FROM passages WHERE kind = 'doc' AND step_id = ?", (doc_id,))
            db.execute("DELETE FROM documents WHERE doc_id = ?", (doc_id,))

    def document_ids(self) -> set[str]:
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT doc_id FROM documents")}

    # --- reading ---------------------------------------------------------------------------

    def search(self, text: str, *, limit: int = 5) -> list[Match]:
        """The passages most relevant to ``text``, best first (BM25)."""
        query = fts_query(text)
        if query is None or limit < 1:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT kind, source, title, text, bm25(passages) AS score, run_id, step_id "
                "FROM passages WHERE passages MATCH ? ORDER BY score LIMIT ?",
                (query, limit),
            ).fetchall()
        return [
            Match(
                kind=kind,
                source=source,
                title=title,
                text=body,
                score=score,
                run_id=run_id,
                step_id=step_id if kind == "step" else None,
            )
            for kind, source, title, body, score, run_id, step_id in rows
        ]

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            if kind is None:
                return int(self._db.execute("SELECT count(*) FROM passages").fetchone()[0])
            row = self._db.execute("SELECT count(*) FROM passages WHERE kind = ?", (kind,))
            return int(row.fetchone()[0])


def _attempt_row(record: RunRecord, result: StepResult) -> tuple[object, ...]:
    workflow = record.workflow
    provider = result.provider
    if provider is None and workflow is not None:  # written before attempts named it
        provider = workflow.task(result.step_id).agent_provider_id
    model = None
    if workflow is not None and provider is not None:
        with contextlib.suppress(KeyError):
            model = workflow.provider(provider).model
    error = None
    if result.error is not None:
        error = f"{result.error.type}: {result.error.message}"[:300]
    finished = result.timing.finished_at
    return (
        record.run_id,
        result.step_id,
        result.attempt,
        provider or "?",
        model,
        result.status,
        result.timing.duration_s,
        result.usage.total_tokens,
        result.usage.cost_usd,
        error,
        finished.isoformat() if finished else None,
    )
