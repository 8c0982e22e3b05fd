"""What the store says about runs the coordinator must continue after a restart.

The coordinator keeps no state of its own: every run it drives is ``running`` in
``run.json`` with ``backend: nats``, and every step's progress is in the store (committed
results, attempt files). Rebuilding reads exactly that. Runs of other backends in the same
store belong to the process that runs them and are never touched; ``pending`` runs wait for
their submit request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentic.contracts import RunRecord, StepResult

if TYPE_CHECKING:
    from agentic.store import RunStore
    from agentic.store.index import OpenRun

NATS_BACKEND = "nats"


@dataclass(frozen=True)
class StoredProgress:
    """A run's progress as the store holds it (the input of ``RunState.restore``)."""

    committed: dict[str, StepResult]
    attempts_seen: dict[str, int]
    provider_failures: dict[str, int]
    """Ended attempts of uncommitted steps that failed with a provider failure: where in
    its fallback chain each step goes on."""


def unfinished_runs(store: RunStore) -> list[OpenRun]:
    """The markers of the ``nats`` backend's unfinished runs, oldest first (the runs index:
    no ``run.json`` is read; the caller reads each when it rebuilds the run)."""
    return store.index.open_runs(NATS_BACKEND)


def stored_progress(store: RunStore, record: RunRecord) -> StoredProgress:
    """Each step's committed result, or the highest attempt that already ended.

    An attempt that succeeded but was never committed (its worker died between the two
    writes) is committed now: the step keeps the output it paid for.
    """
    assert record.workflow is not None
    committed: dict[str, StepResult] = {}
    seen: dict[str, int] = {}
    moved: dict[str, int] = {}
    for step_id in record.workflow.task_sequence:
        result = store.read_result(record.run_id, step_id)
        if result is None:
            attempts = store.read_attempts(record.run_id, step_id)
            success = next((a for a in attempts if a.status == "succeeded"), None)
            if success is not None:
                result, _ = store.commit_result(success)
            elif attempts:
                seen[step_id] = max(a.attempt for a in attempts)
                moved[step_id] = sum(1 for a in attempts if a.error and a.error.provider_failed)
        if result is not None:
            committed[step_id] = result
    return StoredProgress(committed=committed, attempts_seen=seen, provider_failures=moved)


def reusable_results(store: RunStore, record: RunRecord) -> dict[str, StepResult]:
    """Succeeded results already committed to a run that has not started (a replay).

    A client that prepares a replay commits the reused results before it submits the run;
    those steps are not executed again.
    """
    assert record.workflow is not None
    reused = {}
    for step_id in record.workflow.task_sequence:
        result = store.read_result(record.run_id, step_id)
        if result is not None and result.status == "succeeded":
            reused[step_id] = result
    return reused
