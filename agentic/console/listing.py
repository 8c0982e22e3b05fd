"""The runs page: which runs match the filters, newest first, and what they spent.

Runs come from the store's runs index (:meth:`RunStore.headlines`, the path `agentic runs`
takes), so the page reads the entries of the runs it shows (plus the ``run.json`` of the
unfinished ones), not the history. Tokens and cost are summed over the runs on the page
from their attempts (:func:`agentic.cli.details.total_usage`, the rule of ``agentic show``:
a reused result's tokens were spent elsewhere); a finished run's sum never changes, so it is
kept in memory.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, get_args
from urllib.parse import urlencode

from agentic.cli.details import ABANDONED, RunSummary, parse_since, total_usage
from agentic.contracts import BACKEND_NAMES, RunHeadline, RunStatus, Usage
from agentic.errors import ConfigError
from agentic.ids import is_safe_id

if TYPE_CHECKING:
    from agentic.store import RunStore

STATUSES: tuple[str, ...] = (*get_args(RunStatus), ABANDONED)
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
SEARCH_SCAN = 5000
"""A search by part of an id looks at the newest this many runs (an exact id: any run)."""
MAX_TEXT = 200


class QueryError(ConfigError):
    """A filter of the runs page that cannot be used (the page answers 400)."""


@dataclass(frozen=True)
class RunsQuery:
    """The runs page's filters, validated."""

    status: str | None = None
    workflow: str | None = None
    backend: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    search: str | None = None
    limit: int = DEFAULT_LIMIT
    raw: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> RunsQuery:
        """The filters of a query string.

        Raises:
            QueryError: a value that is not one the page knows (names the parameter).
        """
        given = {k: v.strip() for k, v in params.items() if v.strip()}
        unknown = set(given) - {"status", "workflow", "backend", "since", "until", "q", "limit"}
        if unknown:
            raise QueryError(f"unknown parameter {sorted(unknown)[0]!r}")
        for name, value in given.items():
            if len(value) > MAX_TEXT:
                raise QueryError(f"{name}: at most {MAX_TEXT} characters")
        return cls(
            status=_choice(given.get("status"), STATUSES, "status"),
            workflow=given.get("workflow"),
            backend=_choice(given.get("backend"), BACKEND_NAMES, "backend"),
            since=_since(given.get("since")),
            until=_until(given.get("until")),
            search=given.get("q"),
            limit=_limit(given.get("limit")),
            raw=given,
        )

    def query_string(self, **changes: object) -> str:
        """These filters as a query string, with ``changes``."""
        return urlencode({**self.raw, **{k: str(v) for k, v in changes.items()}})

    def matches(self, run: RunSummary) -> bool:
        """Whether ``run`` passes every filter but ``since`` (the index applies it)."""
        abandoned = self.status == ABANDONED and run.abandoned
        if self.status is not None and run.status != self.status and not abandoned:
            return False
        if self.workflow is not None and run.workflow != self.workflow:
            return False
        if self.backend is not None and run.backend != self.backend:
            return False
        if self.until is not None and run.created_at >= self.until:
            return False
        return self.search is None or self.search.lower() in run.run_id.lower()


def _choice(value: str | None, allowed: tuple[str, ...], name: str) -> str | None:
    if value is None or value in allowed:
        return value
    raise QueryError(f"{name} {value!r}: expected one of {', '.join(allowed)}")


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_since(value)
    except ConfigError as exc:
        raise QueryError(str(exc).replace("--since", "since")) from exc


def _until(value: str | None) -> datetime | None:
    """Runs created before the end of this day (UTC)."""
    if value is None:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError as exc:
        raise QueryError(f"until {value!r}: expected a date such as 2026-01-31") from exc
    return datetime.combine(day, time(), tzinfo=UTC) + timedelta(days=1)


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise QueryError(f"limit {value!r}: expected a number from 1 to {MAX_LIMIT}")
    return int(value)


@dataclass(frozen=True)
class RunsPage:
    """What the runs page shows."""

    runs: list[RunSummary]
    usage: dict[str, Usage]
    scanned: int
    more: bool

    @property
    def total(self) -> Usage:
        return total_usage(self.usage.values())


class RunLister:
    """Lists runs of one store for the runs page, keeping the usage of finished runs."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._usage: dict[str, Usage] = {}
        self._lock = threading.Lock()

    def page(self, query: RunsQuery) -> RunsPage:
        """The runs that match ``query``, newest first, with their usage."""
        exact = self._exact(query)
        if exact is not None:
            runs, scanned, more = exact, 1, False
        else:
            runs, scanned, more = self._scan(query)
        usage = self.usages(runs)
        return RunsPage(runs=runs, usage=usage, scanned=scanned, more=more)

    def _exact(self, query: RunsQuery) -> list[RunSummary] | None:
        if query.search is None or not is_safe_id(query.search):
            return None
        record = self.store.readable_run(query.search)
        if record is None:
            return None
        run = RunSummary.of(RunHeadline.of(record))
        return [run] if query.matches(run) else []

    def _scan(self, query: RunsQuery) -> tuple[list[RunSummary], int, bool]:
        runs: list[RunSummary] = []
        scanned = 0
        for headline in self.store.headlines(since=query.since):
            scanned += 1
            if query.search is not None and scanned > SEARCH_SCAN:
                return runs, scanned - 1, True
            run = RunSummary.of(headline)
            if query.matches(run):
                if len(runs) == query.limit:
                    return runs, scanned, True
                runs.append(run)
        return runs, scanned, False

    def usages(self, runs: list[RunSummary]) -> dict[str, Usage]:
        """Tokens and cost of each run (attempts this run paid for)."""
        with self._lock:
            known = {r.run_id: self._usage[r.run_id] for r in runs if r.run_id in self._usage}
        wanted = [r for r in runs if r.run_id not in known]
        found = self.store.read_many(self.usage_of, [r.run_id for r in wanted], ordered=True)
        for run, usage in zip(wanted, found, strict=True):
            known[run.run_id] = usage
            if run.status in ("succeeded", "failed", "cancelled"):
                with self._lock:
                    self._usage[run.run_id] = usage
        return known

    def usage_of(self, run_id: str) -> Usage:
        """What the attempts of ``run_id`` spent (a reused result: nothing)."""
        parts: list[Usage] = []
        for step_id in self.store.list_step_ids(run_id):
            attempts = [
                a for a in self.store.read_attempts(run_id, step_id) if a.reused_from is None
            ]
            if attempts:
                parts.extend(a.usage for a in attempts)
                continue
            result = self.store.read_result(run_id, step_id)
            if result is not None and result.reused_from is None:
                parts.append(result.usage)
        return total_usage(parts)
