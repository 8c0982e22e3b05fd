"""What a client of the ``nats`` backend concludes about a run it followed.

The store is the source of truth: :func:`final_record` returns ``run.json`` once the
coordinator has written it final. A client that does not share the coordinator's store (or
cannot reach it) folds the run's events into a record instead (:func:`record_from_events`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agentic.contracts import RunEvent, RunRecord, RunView, ended_record, fold, utcnow
from agentic.errors import AgenticError

if TYPE_CHECKING:
    from agentic.store import RunStore

log = logging.getLogger(__name__)

# The coordinator writes the final run.json before it publishes the terminal event, so a
# shared store is final at once; this only covers a store slow to show a new version. A
# client with a store of its own gives up after this and folds the events.
FINAL_RECORD_WAIT_S = 0.5


@dataclass
class Followed:
    """What following a run produced: its events, and how it ended."""

    events: list[RunEvent] = field(default_factory=list)
    terminal: RunEvent | None = None
    stored: RunRecord | None = None
    refused: str | None = None
    interrupted: bool = False


def final_record(store: RunStore, record: RunRecord, followed: Followed) -> RunRecord:
    """The finished run: ``run.json`` once it is final, else folded from the events."""
    if followed.stored is not None:
        return followed.stored
    deadline = time.monotonic() + FINAL_RECORD_WAIT_S
    reachable = True
    while True:
        try:
            stored = store.read_run(record.run_id)
        except (AgenticError, OSError) as exc:
            log.warning(
                "cannot read run %s from the store (%s): using its events", record.run_id, exc
            )
            reachable = False
            break
        if stored.is_terminal:
            return stored
        if time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    folded = record_from_events(record, followed.events)
    if reachable:  # the coordinator writes to another store: keep a copy in ours
        try:
            store.write_run(folded)
        except (AgenticError, OSError) as exc:
            log.warning("cannot write run %s to the store: %s", record.run_id, exc)
    return folded


def record_from_events(record: RunRecord, events: Iterable[RunEvent]) -> RunRecord:
    """``record`` brought up to date by the run's events (status, steps, output, error)."""
    return fold(events, RunView.of(record)).to_record(record)


def mark_failed(store: RunStore, record: RunRecord, error: str) -> RunRecord:
    """Record ``record`` failed with ``error`` (its unfinished steps stopped); return it."""
    failed = ended_record(record, "failed", at=utcnow(), error=error)
    store.write_run(failed)
    return failed
