"""Retention: removing finished runs from the run store and the bus (``agentic gc``).

A run goes only when it has ended (``succeeded``, ``failed`` or ``cancelled``) and ended
before the cutoff; ``pending`` and ``running`` runs are never touched, whatever their age
(one whose driver is gone is shown abandoned and can still be replayed). What goes: the
run's folder (``run.json``, specs, attempts, results, artifacts, a cancel request) and its
entries in the knowledge index (:func:`collect`); then, with a NATS server, the events of
the removed ``nats`` runs in ``AGENTIC_EVENTS`` (:class:`StreamPurge`). Nothing else on
the bus names a run in its subject: a finished run has no step queued, and dead letters
(``AGENTIC_DLQ``) go with that stream's own age and byte limits (docs/nats.md).

The store goes first: it is the source of truth, and a server that cannot be reached must
not stop its clean-up. The runs whose events stayed are then reported by id
(:attr:`Purged.left`); ``AGENTIC_EVENTS`` drops them at its max age or byte limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING

from agentic import names
from agentic.contracts import TERMINAL_STATUSES, RunRecord
from agentic.errors import BusError, DecodeError, StoreError

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.js import JetStreamContext

    from agentic.knowledge import KnowledgeIndex
    from agentic.settings import Settings
    from agentic.store import RunStore

log = logging.getLogger(__name__)


@dataclass
class Collected:
    """What a collection removed (or, dry, would remove) and what it kept."""

    removed: list[RunRecord] = field(default_factory=list)
    kept_unfinished: int = 0
    kept_newer: int = 0
    unreadable: list[str] = field(default_factory=list)


def expired(record: RunRecord, cutoff: datetime, statuses: Collection[str]) -> bool:
    """Whether ``record`` ended before ``cutoff`` in one of ``statuses``."""
    if record.status not in TERMINAL_STATUSES or record.status not in statuses:
        return False
    ended = record.finished_at or record.updated_at
    return ended < cutoff


def collect(
    store: RunStore,
    cutoff: datetime,
    *,
    statuses: Collection[str] = TERMINAL_STATUSES,
    dry_run: bool = False,
    index: KnowledgeIndex | None = None,
) -> Collected:
    """Remove the runs that ended before ``cutoff`` (see the module docstring)."""
    done = Collected()
    for run_id in store.list_run_ids():
        try:
            record = store.read_run(run_id)
        except (DecodeError, StoreError) as exc:  # damaged: not ours to decide
            log.warning("keeping run %s: %s", run_id, exc)
            done.unreadable.append(run_id)
            continue
        if not record.is_terminal:
            done.kept_unfinished += 1
            continue
        if not expired(record, cutoff, statuses):
            done.kept_newer += 1
            continue
        if not dry_run:
            store.delete_run(run_id)
            if index is not None:
                index.forget_run(run_id)
        done.removed.append(record)
    return done


# Purge requests in flight at once: one per run, answered by the stream's leader.
PURGE_CONCURRENCY = 32


@dataclass
class Purged:
    """What purging the removed runs' events from ``AGENTIC_EVENTS`` did."""

    runs: list[str] = field(default_factory=list)
    """Runs whose events are gone."""
    left: list[str] = field(default_factory=list)
    """Runs whose events stayed, because of :attr:`error`."""
    error: BusError | None = None
    no_stream: bool = False
    """The server has no ``AGENTIC_EVENTS``: there was nothing to purge."""


def bus_runs(records: Iterable[RunRecord]) -> list[str]:
    """The ids of the runs among ``records`` that published events (backend ``nats``)."""
    return [record.run_id for record in records if record.backend == "nats"]


async def purge_run_events(js: JetStreamContext, run_ids: Sequence[str]) -> Purged:
    """Purge each run's events from ``AGENTIC_EVENTS``, stopping after the first failure.

    Each run's filter is :func:`agentic.names.run_timeline_filter`, which matches that run
    alone (not a run whose id extends it with a dot).
    """
    import nats.errors
    from nats.js.errors import APIError, NotFoundError

    done = Purged()
    for start in range(0, len(run_ids), PURGE_CONCURRENCY):
        chunk = run_ids[start : start + PURGE_CONCURRENCY]
        outcomes = await asyncio.gather(
            *(_purge(js, run_id) for run_id in chunk), return_exceptions=True
        )
        for run_id, outcome in zip(chunk, outcomes, strict=True):
            if outcome is None:
                done.runs.append(run_id)
            elif isinstance(outcome, NotFoundError):
                done.no_stream = True  # no stream, no events
            elif isinstance(outcome, APIError | nats.errors.Error | BusError):
                done.left.append(run_id)
                done.error = done.error or _purge_error(run_id, outcome)
            else:
                raise outcome  # a cancellation or a bug, not the server's answer
        if done.error is not None:
            done.left += run_ids[start + len(chunk) :]
            return done
    return done


async def _purge(js: JetStreamContext, run_id: str) -> None:
    filter_ = names.run_timeline_filter(run_id)
    if not await js.purge_stream(names.EVENTS_STREAM, subject=filter_):
        raise BusError(f"JetStream did not purge {filter_}", run_id=run_id)


def _purge_error(run_id: str, exc: BaseException) -> BusError:
    import nats.errors

    hint = ""
    if isinstance(exc, nats.errors.TimeoutError):
        # nats-server answers a request it does not permit with silence (and a warning).
        hint = (
            " (no answer: on a server with authentication only the coordinator's identity "
            "may purge, so give gc its seed with AGENTIC_NATS_NKEY_SEED_FILE)"
        )
    return BusError(
        f"purging the events of run {run_id} from {names.EVENTS_STREAM} failed: "
        f"{type(exc).__name__}: {exc}{hint}",
        run_id=run_id,
        cause=exc,
    )


class StreamPurge:
    """Purges removed runs' events from ``AGENTIC_EVENTS`` over one NATS connection, for a
    synchronous caller: ``with StreamPurge(settings) as bus: ... bus.purge(removed)``.

    Entering connects, so that a NATS configuration that cannot work (a missing credentials
    file) raises :class:`~agentic.errors.ConfigError` before anything is removed. A server
    that cannot be reached is no error yet: :meth:`purge` reports it with the runs it left.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._runner: asyncio.Runner | None = None
        self._nc: NATS | None = None
        self._unreachable: BusError | None = None

    def __enter__(self) -> StreamPurge:
        from agentic.bus import connect

        self._runner = asyncio.Runner()
        try:
            self._nc = self._runner.run(connect(self._settings, name="agentic-gc"))
        except BusError as exc:
            self._unreachable = exc
        except BaseException:
            self._runner.close()
            raise
        return self

    def purge(self, removed: Iterable[RunRecord]) -> Purged:
        """Purge the events of the ``nats`` runs among ``removed`` (see :class:`Purged`)."""
        run_ids = bus_runs(removed)
        if not run_ids:
            return Purged()
        if self._runner is None:
            raise RuntimeError("StreamPurge.purge outside its with block")
        if self._nc is None:
            return Purged(left=run_ids, error=self._unreachable)
        return self._runner.run(purge_run_events(self._nc.jetstream(), run_ids))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is None:
            return
        try:
            if self._nc is not None:
                self._runner.run(self._nc.close())
        finally:
            self._runner.close()
            self._runner = None
