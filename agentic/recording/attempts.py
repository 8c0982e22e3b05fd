"""Writing step attempts and committed results: the store side of every driver.

* :func:`record_attempt` is what a step's own process (a worker, ``execute-step``) does with
  the result it produced: write the attempt, and commit it when it is the step's final word.
* :func:`record_failure` and :func:`commit_failure` carry out the state machine's
  :class:`~agentic.coordinator.RecordFailure` and :class:`~agentic.coordinator.CommitFailure`
  for every driver: the failures a step could not record itself, and the last failure of a
  step that will not be retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from agentic.contracts import StepError, StepResult, encode
from agentic.coordinator import CommitFailure, RecordFailure
from agentic.recording.outcome import attempt_outcome, failed_attempt

if TYPE_CHECKING:
    from agentic.store import RunStore


OUTPUT_TOO_LARGE = "OutputTooLarge"


def storable(result: StepResult, max_bytes: int) -> StepResult:
    """``result``, or, when it is too large to be a store document, a failed attempt that
    says so: not retryable (the same step would write the same output again), so its run
    fails at once with a clear error instead of paying for the step again and again."""
    size = len(encode(result))
    if size <= max_bytes:
        return result
    error = StepError(
        type=OUTPUT_TOO_LARGE,
        message=(
            f"the step's result is {size:,} bytes ({len(result.output):,} characters of "
            f"output), over the run store's limit of {max_bytes:,} bytes "
            "(AGENTIC_MAX_DOCUMENT_BYTES)"
        ),
        retryable=False,
    )
    return StepResult.failed(
        result.run_id,
        result.step_id,
        result.attempt,
        error,
        timing=result.timing,
        worker=result.worker,
        provider=result.provider,
    ).model_copy(update={"usage": result.usage})


def record_attempt(store: RunStore, result: StepResult) -> StepResult:
    """Write ``result`` as its attempt, and commit it when it is the step's final word.

    A success is committed; so is a failure that is not retryable (no other attempt will
    follow). A retryable failure is only an attempt: the coordinator may retry, and the
    last failure is committed by the coordinator once it gives up. An existing commit (an
    earlier attempt's, or a duplicate delivery's) is never overwritten.

    The commit is :meth:`RunStore.commit_attempt`: on a local store ``result.json`` is a
    second name of the attempt file just written (one write and fsync fewer on every
    step's critical path). If a duplicate delivery of the same attempt rewrites that file
    in between, its result is the one committed: still exactly one committed result of
    this attempt, which every reader of the store sees.

    Returns:
        The step's committed result, or ``result`` when nothing was committed.
    """
    result = storable(result, store.max_doc_bytes)
    final = result.status == "succeeded" or (
        result.error is not None and not result.error.retryable
    )
    if not final:
        store.write_attempt(result)
        return result
    committed, _ = store.commit_attempt(result)
    return committed


def record_failure(
    store: RunStore,
    run_id: str,
    command: RecordFailure,
    *,
    queued_at: datetime | None = None,
    started_at: datetime | None = None,
) -> StepResult:
    """Write the failed attempt ``command`` names (the driver's process is its ``worker``)."""
    result = failed_attempt(
        run_id,
        command.step_id,
        command.attempt,
        command.error,
        queued_at=queued_at,
        started_at=started_at,
        provider=command.provider,
    )
    store.write_attempt(result)
    return result


def commit_failure(store: RunStore, run_id: str, command: CommitFailure) -> None:
    """Commit the failed attempt ``command`` names as its step's result (first commit wins:
    a success committed meanwhile stays)."""
    outcome = attempt_outcome(store, run_id, command.step_id, command.attempt)
    if outcome is not None and outcome.status == "failed":
        store.commit_result(outcome)


def commit_reused(store: RunStore, run_id: str, reused: Mapping[str, StepResult]) -> None:
    """Commit each reused result to ``run_id``, marked with the run that produced it."""
    for result in reused.values():
        copy = result.model_copy(
            update={"run_id": run_id, "reused_from": result.reused_from or result.run_id}
        )
        store.commit_result(copy)
