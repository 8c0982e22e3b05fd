"""Following a run from another terminal (`agentic watch`): its ``run.json`` read again and
again, each step's change told as the event that caused it.

The store is every backend's source of truth, so one way of following serves them all:
``inprocess`` and ``subprocess`` runs driven by a process elsewhere, Jobs, and ``nats``
runs (whose coordinator writes the same snapshots). Steps are reported as their snapshot
changes (a change between two looks is reported once, as where it ended up), and the run's
outcome comes from the store as for ``agentic run``. A step that ended is told with what its
attempt's result records (its duration, its error), so the progress shows the duration
``agentic show`` shows, not the time between two looks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentic.contracts import EventType, RunEvent, RunRecord, StepResult, StepState, utcnow
from agentic.contracts.events import StepFailedData, StepSucceededData
from agentic.recording.journal import ENDS_OF_ATTEMPTS, abandoned

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
                event = _event_of(store, record.run_id, step, seq)
                if event is not None:
                    on_event(event)
                    seq += 1
        if record.is_terminal or abandoned(record):
            return record
        sleep(interval_s)
        record = store.read_run(run_id)


def _event_of(store: RunStore, run_id: str, step: StepState, seq: int) -> RunEvent | None:
    event_type = EVENT_OF.get(step.status)
    if event_type is None:
        return None
    data: dict[str, Any] = {}
    if event_type in ENDS_OF_ATTEMPTS:
        data = _end_data(event_type, _attempt_result(store, run_id, step))
    return RunEvent(
        run_id=run_id,
        seq=seq,
        type=event_type,
        ts=utcnow(),
        step_id=step.step_id,
        attempt=step.attempt or None,
        data=data,
    )


def _end_data(event_type: EventType, result: StepResult | None) -> dict[str, Any]:
    """What the event that ends an attempt says of the attempt's ``result``: its duration
    and, for a failure, its error (nothing of a result reused from another run)."""
    if result is None or result.reused_from is not None:
        return {}
    duration = result.timing.duration_s
    timed: dict[str, Any] = {} if duration is None else {"duration_s": duration}
    if event_type == "step_succeeded":
        return StepSucceededData(**timed).as_data()
    return StepFailedData(error=result.error, **timed).as_data()


def _attempt_result(store: RunStore, run_id: str, step: StepState) -> StepResult | None:
    """What the step's current attempt recorded (read only: a watcher commits nothing)."""
    result = store.read_result(run_id, step.step_id)
    if result is not None and result.attempt == step.attempt:
        return result
    attempts = store.read_attempts(run_id, step.step_id)
    return next((a for a in attempts if a.attempt == step.attempt), None)
