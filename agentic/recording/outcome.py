"""What became of a step attempt, read from the run store (the source of truth).

A launched step reports nothing to the driver but its exit: the driver reads what the step
committed. These helpers turn "the process is gone" into a :class:`StepResult`, and record
the failures a step could not record itself (a crash, a timeout, a launch that failed) as
attempts, so ``agentic show`` displays them like any other attempt.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import TYPE_CHECKING

from agentic.contracts import StepError, StepResult, Timing, WorkerInfo, utcnow

if TYPE_CHECKING:
    from agentic.store import RunStore


def failed_attempt(
    run_id: str,
    step_id: str,
    attempt: int,
    error: StepError,
    *,
    queued_at: datetime | None = None,
    started_at: datetime | None = None,
    provider: str | None = None,
) -> StepResult:
    """A failed StepResult written on behalf of an attempt that could not write its own.

    ``worker`` names the driver's process: that is who observed the failure; ``provider``
    the agent provider the attempt ran on.
    """
    return StepResult.failed(
        run_id,
        step_id,
        attempt,
        error,
        timing=Timing(queued_at=queued_at, started_at=started_at, finished_at=utcnow()),
        worker=WorkerInfo(host=socket.gethostname(), pid=os.getpid()),
        provider=provider,
    )


def committed_success(store: RunStore, run_id: str, step_id: str) -> StepResult | None:
    """The step's committed result if it succeeded (whichever attempt committed it)."""
    committed = store.read_result(run_id, step_id)
    if committed is not None and committed.status == "succeeded":
        return committed
    return None


def attempt_outcome(store: RunStore, run_id: str, step_id: str, attempt: int) -> StepResult | None:
    """What ``attempt`` of ``step_id`` recorded, preferring the committed result.

    Returns the committed result when it succeeded (any attempt: the step is done) or when
    it belongs to ``attempt``; else the attempt's own file; else None (the attempt died
    before it wrote anything). An attempt file that succeeded but was never committed (the
    process died between the two writes) is committed here, so the step keeps the output
    it paid for.
    """
    committed = store.read_result(run_id, step_id)
    if committed is not None and (committed.status == "succeeded" or committed.attempt == attempt):
        return committed
    own = next((r for r in store.read_attempts(run_id, step_id) if r.attempt == attempt), None)
    if own is not None and own.status == "succeeded":
        result, _ = store.commit_result(own)
        return result
    return own
