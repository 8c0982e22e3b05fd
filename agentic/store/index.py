"""The runs index: listing runs and finding unfinished ones without reading history.

Beside ``runs/``, the store keeps (paths from :mod:`agentic.names`)::

    index/version.json              the index is complete (written by a rebuild)
    index/open/<run_id>.json        a marker per run not ended: {run_id, backend, created_at}
    index/runs/<YYYY-MM-DD>/<HHMMSSffffff>_<run_id>.json
                                    a RunHeadline per run, named by its creation time (UTC)

So a coordinator's start-up lists ``index/open`` (it costs the number of unfinished runs), and
``agentic runs --limit N`` lists the newest day folders and reads N entries plus the
``run.json`` of each unfinished run: neither depends on how many runs ended before.

``run.json`` stays the truth; the index follows it, in an order that a crash at any point
leaves repairable:

* creating a run writes its open marker *before* ``run.json`` (a marker without a run, or of
  a run that has ended, is dropped by the next reader that finds it so), and its entry after;
* a write that ends a run writes ``run.json``, then the entry, then drops the marker (a crash
  in between leaves a marker: readers take the status from ``run.json``);
* entries are rewritten when a run's status changes (this process remembers what it wrote),
  so an unfinished run's entry may show old progress: readers take unfinished runs from
  ``run.json`` through their markers.

A store without ``index/version.json`` (older than the index, or its index deleted) is
indexed by the first reader that needs it (:meth:`RunIndex.ensure`); ``agentic store
reindex`` rebuilds it on demand. A reader that cannot write (a read-only store) falls back to
reading every ``run.json``.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from agentic import names
from agentic.contracts import BackendName, Frozen, RunHeadline, RunRecord, utcnow
from agentic.errors import DecodeError, StoreError
from agentic.ids import is_safe_id

if TYPE_CHECKING:
    from agentic.store.runstore import RunStore

log = logging.getLogger(__name__)

INDEX_FORMAT = 1


class OpenRun(Frozen):
    """The marker of a run that has not ended."""

    run_id: str
    backend: BackendName
    created_at: datetime


class IndexVersion(Frozen):
    format: int = INDEX_FORMAT
    built_at: datetime
    runs: int


def _place(run_id: str, created_at: datetime) -> tuple[str, str]:
    """The day folder and the entry path of a run created at ``created_at``."""
    at = created_at.astimezone(UTC)
    day = at.strftime("%Y-%m-%d")
    return day, names.index_entry(day, at.strftime("%H%M%S%f"), run_id)


def _newest_first(headline: RunHeadline) -> tuple[datetime, str]:
    return headline.created_at, headline.run_id


class RunIndex:
    """The index of one :class:`~agentic.store.RunStore` (its ``index`` attribute)."""

    def __init__(self, store: RunStore) -> None:
        self._store = store
        self._written: dict[str, str] = {}  # run id -> status of the entry written here
        self._complete = False

    # --- following run.json ----------------------------------------------------------

    def opening(self, record: RunRecord) -> None:
        """Before ``record``'s ``run.json`` is created: mark it open unless it has ended
        (and, for the first run of an empty store, say the index is complete)."""
        if not self._complete:
            self._start()
        if not record.is_terminal:
            marker = OpenRun(
                run_id=record.run_id, backend=record.backend, created_at=record.created_at
            )
            self._store.write_model(names.open_run_marker(record.run_id), marker)

    def created(self, record: RunRecord, *, created: bool) -> None:
        """After creating ``run.json``: its entry, or (another run had the id) the marker
        written for nothing dropped, unless that run is open."""
        if created:
            self.recorded(record)
            return
        if record.is_terminal:
            return
        existing = self._store.readable_run(record.run_id)
        if existing is not None and existing.is_terminal:
            self._store.delete_doc(names.open_run_marker(record.run_id))

    def recorded(self, record: RunRecord) -> None:
        """After ``run.json`` was written: the entry when the status changed, and the
        marker dropped when the run ended."""
        if self._written.get(record.run_id) == record.status and not record.is_terminal:
            return
        _, entry = _place(record.run_id, record.created_at)
        self._store.write_model(entry, RunHeadline.of(record))
        if record.is_terminal:
            self._store.delete_doc(names.open_run_marker(record.run_id))
            self._written.pop(record.run_id, None)
        else:
            self._written[record.run_id] = record.status

    def removed(self, run_id: str, created_at: datetime | None) -> None:
        """After a run's folder was deleted: its marker and entry go too (an entry whose
        creation time is unknown is looked for in every day)."""
        self._written.pop(run_id, None)
        self._store.delete_doc(names.open_run_marker(run_id))
        if created_at is not None:
            self._store.delete_doc(_place(run_id, created_at)[1])
            return
        for day in self._days():
            for name in self._entry_names(day):
                parsed = names.parse_index_entry(name)
                if parsed is not None and parsed[1] == run_id:
                    self._store.delete_doc(f"{names.index_day_dir(day)}/{name}")

    # --- reading ---------------------------------------------------------------------

    def open_runs(self, backend: str | None = None) -> list[OpenRun]:
        """The markers of runs not ended (of ``backend`` when given), oldest first.

        A marker names a run that may have ended since (a crash between ``run.json`` and the
        marker's removal): the caller reads ``run.json`` and :meth:`settle` s it.
        """
        self.ensure()
        markers = self._store.read_many(self._read_marker, self._marked_ids())
        found = [m for m in markers if m is not None and (backend is None or m.backend == backend)]
        return sorted(found, key=lambda m: (m.created_at, m.run_id))

    def settle(self, run_id: str, record: RunRecord | None) -> None:
        """Repair what a reader found: a marker of a run that ended or does not exist."""
        if record is None:
            self._store.delete_doc(names.open_run_marker(run_id))
        elif record.is_terminal:
            self.recorded(record)

    def headlines(self, *, since: datetime | None = None) -> Iterator[RunHeadline]:
        """Every run created at or after ``since``, newest first: unfinished runs as their
        ``run.json`` says now, ended runs as their entry says."""
        if not self.ensure():
            every = self._store.list_runs()
            yield from (RunHeadline.of(r) for r in every if since is None or r.created_at >= since)
            return
        open_ids = {m.run_id for m in self.open_runs()}
        found = self._store.read_many(self._store.readable_run, sorted(open_ids))
        live = [RunHeadline.of(r) for r in found if r is not None]
        live.sort(key=_newest_first, reverse=True)
        if since is not None:
            live = [h for h in live if h.created_at >= since]
        ended = self._entries(since, skip=open_ids)
        yield from heapq.merge(live, ended, key=_newest_first, reverse=True)

    def _entries(self, since: datetime | None, skip: set[str]) -> Iterator[RunHeadline]:
        first_day = since.astimezone(UTC).strftime("%Y-%m-%d") if since else None
        for day in reversed(self._days()):
            if first_day is not None and day < first_day:
                return
            folder = names.index_day_dir(day)
            wanted = [
                f"{folder}/{name}"
                for name in reversed(self._entry_names(day))
                if (parsed := names.parse_index_entry(name)) and parsed[1] not in skip
            ]
            for headline in self._store.read_many(self._read_entry, wanted, ordered=True):
                if headline is None:
                    continue
                if since is not None and headline.created_at < since:
                    return
                yield headline

    def _read_entry(self, path: str) -> RunHeadline | None:
        try:
            headline = self._store.read_model(path, RunHeadline)
        except DecodeError as exc:
            log.warning("skipping a damaged index entry: %s", exc)
            return None
        if headline is None or headline.is_terminal:
            return headline
        # An unfinished run without a marker: only a crash leaves that; run.json knows.
        record = self._store.readable_run(headline.run_id)
        return RunHeadline.of(record) if record is not None else None

    # --- completeness ----------------------------------------------------------------

    def _start(self) -> None:
        """Once per process, before its first run: an empty store's index is complete from
        its first run on; a store with runs and no index is left for a reader to index."""
        if self._store.read_model(names.INDEX_VERSION, IndexVersion) is not None:
            self._complete = True
        elif not self._store.list_run_ids():
            self._store.write_model(names.INDEX_VERSION, IndexVersion(built_at=utcnow(), runs=0))
            self._complete = True

    def ensure(self) -> bool:
        """True when the index is complete; builds it when it was never built. False (and
        logged) when it cannot be built here: callers then read every ``run.json``."""
        if self._complete:
            return True
        if self._store.read_model(names.INDEX_VERSION, IndexVersion) is not None:
            self._complete = True
            return True
        try:
            count = self.rebuild()
        except StoreError as exc:
            log.warning("the runs index of %s cannot be built here: %s", self._store.url, exc)
            return False
        log.info("indexed %d runs of %s", count, self._store.url)
        return True

    def rebuild(self) -> int:
        """Index every run from its ``run.json`` (``agentic store reindex``); entries and
        markers of runs that are gone are removed. Returns the number of runs indexed.

        Safe while runs are written: a run created meanwhile indexes itself, and nothing
        of a run whose folder exists is removed.
        """
        run_ids = self._store.list_run_ids()
        records = [
            r for r in self._store.read_many(self._store.readable_run, run_ids) if r is not None
        ]
        known = {r.run_id: r for r in records}
        for record in records:
            self._written.pop(record.run_id, None)
            if record.is_terminal:
                self.recorded(record)
            else:
                self.opening(record)
                self.recorded(record)
        for run_id in self._marked_ids():
            if run_id not in known and not self._store.run_exists(run_id):
                self._store.delete_doc(names.open_run_marker(run_id))
        for day in self._days():
            for name in self._entry_names(day):
                parsed = names.parse_index_entry(name)
                if parsed is None:
                    continue
                path = f"{names.index_day_dir(day)}/{name}"
                indexed = known.get(parsed[1])
                if indexed is not None and _place(indexed.run_id, indexed.created_at)[1] == path:
                    continue
                if indexed is None and self._store.run_exists(parsed[1]):
                    continue  # created after the listing: it indexed itself
                self._store.delete_doc(path)
        version = IndexVersion(built_at=utcnow(), runs=len(records))
        self._store.write_model(names.INDEX_VERSION, version)
        self._complete = True
        return len(records)

    # --- folders ---------------------------------------------------------------------

    def _marked_ids(self) -> list[str]:
        listed = self._store.list_names(names.OPEN_RUNS_DIR, dirs=False)
        found = (name[: -len(".json")] for name in listed if name.endswith(".json"))
        return [run_id for run_id in found if is_safe_id(run_id)]

    def _read_marker(self, run_id: str) -> OpenRun | None:
        try:
            return self._store.read_model(names.open_run_marker(run_id), OpenRun)
        except DecodeError as exc:  # damaged: the run's run.json still says where it is
            log.warning("ignoring a damaged open-run marker: %s", exc)
            return None

    def _days(self) -> list[str]:
        return self._store.list_names(names.INDEXED_RUNS_DIR, dirs=True)

    def _entry_names(self, day: str) -> list[str]:
        return self._store.list_names(names.index_day_dir(day), dirs=False)
