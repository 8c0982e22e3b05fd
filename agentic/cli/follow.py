"""Following a run from another terminal (`agentic watch`): its ``run.json`` read again and
again, each step's change told as the event that caused it.

The store is every backend's source of truth, so one way of following serves them all:
``inprocess`` and ``subprocess`` runs driven by a process elsewhere, Jobs, and ``nats``
runs (whose coordinator writes the same snapshots). Steps are reported as their snapshot
changes (a change between two looks is reported once, as where it ended up), and the run's
outcome comes from the store as for ``agentic run``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentic.contracts import EventType, RunEvent, RunRecord, StepState, utcnow
from agentic.recording.journal import abandoned

if TYPE_CHECKING:
    from agentic.store import RunStore

EVENT_OF: dict[str, EventType] = {
    "ready": "step_ready",
    "running": "step_started",
    "retrying": "step_retrying",
    "succeeded": "step_succeeded",
    "failed": "step_failed",
}
"""The event that leaves a step in each status (cancelled and skipped: the run's end)."""


def follow(
    store: RunStore,
    run_id: str,
    on_event: Callable[[RunEvent], None],
    on_start: Callable[[RunRecord], None],
    *,
    interval_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> RunRecord:
    """Follow ``run_id`` until it ends (or nobody drives it any more); the last record."""
    record = store.read_run(run_id)
    on_start(record)
    seen: dict[str, tuple[str, int]] = {}
    seq = 0
    while True:
        for step in record.steps:
            if seen.get(step.step_id) != (step.status, step.attempt):
                seen[step.step_id] = (step.status, step.attempt)
                event = _event_of(record.run_id, step, seq)
                if event is not None:
                    on_event(event)
                    seq += 1
        if record.is_terminal or abandoned(record):
            return record
        sleep(interval_s)
        record = store.read_run(run_id)


def _event_of(run_id: str, step: StepState, seq: int) -> RunEvent | None:
    event_type = EVENT_OF.get(step.status)
    if event_type is None:
        return None
    return RunEvent(
        run_id=run_id,
        seq=seq,
        type=event_type,
        ts=utcnow(),
        step_id=step.step_id,
        attempt=step.attempt or None,
    )
