"""Retention: removing finished runs from the run store (``agentic gc``).

A run goes only when it has ended (``succeeded``, ``failed`` or ``cancelled``) and ended
before the cutoff; ``pending`` and ``running`` runs are never touched, whatever their age
(one whose driver is gone is shown abandoned and can still be replayed). What goes: the
run's folder (``run.json``, specs, attempts, results, artifacts, a cancel request) and its
entries in the knowledge index. The streams keep a run's messages until their own
retention drops them (docs/nats.md): they are not the source of truth.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from agentic.contracts import TERMINAL_STATUSES, RunRecord
from agentic.errors import DecodeError, StoreError

if TYPE_CHECKING:
    from agentic.knowledge import KnowledgeIndex
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
