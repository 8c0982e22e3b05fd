"""Goal runs outside the planner proper: the CLI's planner options, a run whose plan failed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentic.contracts import (
    PlannerOptions,
    Review,
    RunRecord,
    RunRequest,
    StepState,
    WorkflowConfig,
    utcnow,
)
from agentic.errors import ConfigError, PlanError
from agentic.ids import check_id
from agentic.preparation import with_run_id
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.store import RunStore


def planner_options(
    goal: str | None,
    *,
    iterative: bool,
    max_rounds: int | None,
    session: str | None,
    knowledge: bool = True,
) -> PlannerOptions | None:
    """The planner options of ``agentic run`` (None when none is given).

    Raises:
        ConfigError: an option without ``--goal``, ``--max-rounds`` without
            ``--iterative``, or an unsafe session name.
    """
    if not (iterative or max_rounds is not None or session is not None or not knowledge):
        return None
    if goal is None:
        raise ConfigError(
            "--iterative, --max-rounds, --session and --no-kb plan a goal: give --goal TEXT"
        )
    if max_rounds is not None and not iterative:
        raise ConfigError("--max-rounds limits an --iterative run: add --iterative")
    options: dict[str, Any] = {"iterative": iterative, "session": session, "knowledge": knowledge}
    if session is not None:
        check_id(session, "session name")
    if max_rounds is not None:
        options["max_rounds"] = max_rounds
    return PlannerOptions(**options)


def review_options(provider: str | None, min_score: float | None) -> Review | None:
    """``--review ID [--min-score N]`` (None when not given).

    Raises:
        ConfigError: ``--min-score`` without ``--review``, or a value out of 0-10.
    """
    if provider is None:
        if min_score is not None:
            raise ConfigError("--min-score is the passing score of a --review: add --review ID")
        return None
    check_id(provider, "review provider")
    if min_score is not None and not 0 <= min_score <= 10:
        raise ConfigError(f"--min-score {min_score:g}: give a score from 0 to 10")
    return Review(provider=provider, min_score=min_score)


def failed_plan_record(
    store: RunStore, request: RunRequest, settings: Settings, error: PlanError
) -> RunRecord:
    """Record a goal whose planning failed as a failed run; return its record.

    ``run.json`` ``plan`` keeps the planning record (the prompt and every raw reply of the
    planner) so the failure can be inspected with ``agentic show``.
    """
    request = with_run_id(request)
    assert request.run_id is not None
    now = utcnow()
    record = RunRecord(
        run_id=request.run_id,
        status="failed",
        request=request,
        inputs=dict(request.inputs),
        backend=request.backend or settings.execution_backend,
        labels=dict(request.labels),
        error=(
            f"planning failed: {error} (the planner's replies: "
            f"agentic show {request.run_id} --json, under plan)"
        ),
        plan=error.plan or {"error": str(error), "raw_output": error.raw_output},
        updated_at=now,
        finished_at=now,
    )
    if not store.create_run(record):
        return store.read_run(record.run_id)
    return record


def record_session_outcome(store: RunStore, record: RunRecord) -> None:
    """Give a finished goal's planner session its final answer (no session: nothing)."""
    if record.request.planner is None or record.request.planner.session is None:
        return
    from agentic.planning import record_outcome

    record_outcome(store, record)


def round_record(
    request: RunRequest, workflow: WorkflowConfig, *, plan: dict[str, Any]
) -> RunRecord:
    """A pending record of one round (or of the goal) of an iterative run."""
    assert request.run_id is not None
    return RunRecord(
        run_id=request.run_id,
        request=request,
        workflow=workflow,
        inputs=dict(request.inputs),
        backend=request.backend or "inprocess",
        replay_of=request.replay_of.run_id if request.replay_of else None,
        labels=dict(request.labels),
        steps=[StepState(step_id=s) for s in workflow.task_sequence],
        plan=plan,
    )


def unique_id(base: str, taken: list[str]) -> str:
    """``base``, or ``base-2``, ``base-3`` … whichever ``taken`` does not hold yet."""
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name
