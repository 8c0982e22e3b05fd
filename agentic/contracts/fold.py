"""One fold of run events into the states of a run and its steps.

Everything that reads a run's events to say where the run stands uses this module: the
nats client (a run record folded from the events it followed), the progress display of
``agentic run``, and whoever ends a run by hand (``agentic cancel``, a refused submit). The
coordinator's state machine says the same in its own words and takes
:func:`stopped_status` from here.

* :data:`STEP_STATUS` is the one table of the step status each step event leads to.
* :func:`stopped_status` is the one rule for a run that ended: what was still going is
  ``cancelled``, what never ran is ``skipped``.
* :func:`apply` folds one event into a :class:`RunView`; :func:`fold` folds many.

The fold follows the coordinator where events could say otherwise: a retrying step keeps
the number of the attempt that failed (``step_retrying`` names the next one, not yet
dispatched); news of an earlier attempt than the step's current one changes nothing; a run
that ended takes no more events (a worker may report after a cancel).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from agentic.contracts.events import (
    END_TYPES,
    EndType,
    StepFailedData,
    StepProgressData,
    StepReadyData,
    StepRetryingData,
    StepSucceededData,
    end_details,
    payload_or_none,
)
from agentic.contracts.messages import (
    TERMINAL_STATUSES,
    EventType,
    RunEvent,
    RunRecord,
    RunStatus,
    StepError,
    StepState,
    StepStatus,
)

ACTIVE: tuple[StepStatus, ...] = ("ready", "running")
"""An attempt of the step is out: its clock runs, and a run that ends stops it."""

STEP_STATUS: Mapping[EventType, StepStatus] = {
    "step_ready": "ready",
    "step_started": "running",
    "step_succeeded": "succeeded",
    "step_failed": "failed",
    "step_retrying": "retrying",
}
"""The status a step event leads to (``step_progress`` leaves the status as it is)."""

_STOPPED: Mapping[StepStatus, StepStatus] = {
    "ready": "cancelled",
    "running": "cancelled",
    "retrying": "cancelled",
    "pending": "skipped",
}


def stopped_status(status: StepStatus) -> StepStatus:
    """A step's status once its run ended: what was still going (dispatched, running or
    waiting for a retry) is cancelled, what never ran is skipped, the rest stays."""
    return _STOPPED.get(status, status)


@dataclass(frozen=True)
class StepView:
    """One step as the events describe it.

    Attributes:
        step_id: The step.
        status: Where it stands.
        attempt: Its current attempt (0 before the first is dispatched).
        ready_at: When the current attempt was dispatched.
        started_at: When a worker began the current attempt.
        finished_at: When the current attempt ended (or the run stopped it).
        error: Why the last attempt failed.
        retry_delay_s: How long a retrying step waits for its next attempt.
        reused: Its result was taken over from an earlier run (a replay).
        reused_from: That run, when the event names it.
        message: The running attempt's last progress note.
        fallback: The fallback provider the current attempt runs on (None: its own).
        duration_s: How long the ended attempt ran, as its result records it (the event
            that ended it says, when its sender held the result).
    """

    step_id: str
    status: StepStatus = "pending"
    attempt: int = 0
    ready_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: StepError | None = None
    retry_delay_s: float | None = None
    reused: bool = False
    reused_from: str | None = None
    message: str = ""
    fallback: str | None = None
    duration_s: float | None = None

    @property
    def state(self) -> StepState:
        """The step as ``run.json`` records it."""
        return StepState(step_id=self.step_id, status=self.status, attempt=self.attempt)


@dataclass(frozen=True)
class RunView:
    """A run as its events describe it; every change returns a new view.

    Attributes:
        run_id: The run (None until a record or an event names it).
        status: Where the run stands.
        steps: Its steps by id, in the order they became known (treat as read-only).
        output: A succeeded run's output.
        error: Why a run failed or was cancelled.
        finished_at: When it ended.
    """

    run_id: str | None = None
    status: RunStatus = "pending"
    steps: Mapping[str, StepView] = field(default_factory=dict)
    output: str | None = None
    error: str | None = None
    finished_at: datetime | None = None

    @classmethod
    def of(cls, record: RunRecord) -> RunView:
        """The view ``record`` holds: its status, output and error, and its steps' states."""
        return cls(
            run_id=record.run_id,
            status=record.status,
            steps={s.step_id: StepView(s.step_id, s.status, s.attempt) for s in record.steps},
            output=record.output,
            error=record.error,
            finished_at=record.finished_at,
        )

    @property
    def finished(self) -> bool:
        """True once the run succeeded, failed or was cancelled."""
        return self.status in TERMINAL_STATUSES

    def with_steps(self, step_ids: Iterable[str]) -> RunView:
        """The view with every step of ``step_ids`` it does not know yet added as pending."""
        added = {s: StepView(s) for s in step_ids if s not in self.steps}
        return replace(self, steps={**self.steps, **added}) if added else self

    def step_states(self) -> list[StepState]:
        """Every step's status and attempt, as ``run.json`` records them."""
        return [step.state for step in self.steps.values()]

    def to_record(self, record: RunRecord) -> RunRecord:
        """``record`` brought up to this view: status and steps; output, error and
        ``finished_at`` (also its ``updated_at``) once the run ended."""
        changes: dict[str, Any] = {"status": self.status, "steps": self.step_states()}
        if self.finished:
            changes.update(
                output=self.output,
                error=self.error,
                finished_at=self.finished_at,
                updated_at=self.finished_at or record.updated_at,
            )
        return record.model_copy(update=changes)


def fold(events: Iterable[RunEvent], view: RunView | None = None) -> RunView:
    """``view`` (an empty run by default) after each of ``events`` in turn."""
    view = view if view is not None else RunView()
    for event in events:
        view = apply(view, event)
    return view


def apply(view: RunView, event: RunEvent) -> RunView:
    """``view`` after ``event``.

    Any event of a run that has not ended means the run is running; an event that ends it
    stops its steps (:func:`ended`). A payload that does not fit its type is logged and its
    details left out; the type still counts. An event the fold ignores (the run had ended,
    or the step had moved past its attempt) returns ``view`` itself.
    """
    if view.finished or _stale(view, event):
        return view  # a late worker event, an end published twice, an old attempt's news
    running = replace(view, run_id=view.run_id or event.run_id, status="running")
    end = END_TYPES.get(event.type)
    if end is not None:
        output, error = end_details(event)
        return ended(running, end, at=event.ts, output=output, error=error)
    if event.step_id is None:
        return running
    step = view.steps.get(event.step_id) or StepView(event.step_id)
    return replace(running, steps={**running.steps, step.step_id: next_step(step, event)})


def next_step(step: StepView, event: RunEvent) -> StepView:
    """``step`` after ``event``, one of its own events."""
    # ``step_retrying`` names the attempt to come; the step stays at the one that failed.
    attempt = step.attempt if event.type == "step_retrying" else event.attempt or step.attempt
    moved = replace(step, status=STEP_STATUS.get(event.type, step.status), attempt=attempt)
    details = _DETAILS.get(event.type)
    return moved if details is None else details(moved, event)


def ended(
    view: RunView,
    status: EndType,
    *,
    at: datetime,
    output: str | None = None,
    error: str | None = None,
) -> RunView:
    """``view`` of a run that ended with ``status`` at ``at``: its unfinished steps are
    stopped (:func:`stopped_status`) and the clocks of those that were out stop at ``at``."""
    steps = {step_id: _stopped(step, at) for step_id, step in view.steps.items()}
    return replace(view, status=status, output=output, error=error, finished_at=at, steps=steps)


def ended_record(
    record: RunRecord, status: EndType, *, at: datetime, error: str | None = None
) -> RunRecord:
    """``record`` ended with ``status`` (and ``error``) at ``at``, its unfinished steps
    stopped: what a process that ends a run by hand writes."""
    return ended(RunView.of(record), status, at=at, error=error).to_record(record)


def settled(view: RunView, record: RunRecord, *, at: datetime) -> RunView:
    """``view`` corrected by ``record``, the run's own word (events may have been lost).

    Each step of ``record`` takes its status there (and its attempt, when it has one); a
    step that was out and is not any more stops its clock at ``at``.
    """
    steps = dict(view.steps)
    for state in record.steps:
        step = steps.get(state.step_id) or StepView(state.step_id)
        stopped = state.status not in ACTIVE and step.status in ACTIVE
        steps[state.step_id] = replace(
            step,
            status=state.status,
            attempt=state.attempt or step.attempt,
            finished_at=at if stopped else step.finished_at,
        )
    return replace(
        view,
        run_id=record.run_id,
        status=record.status,
        steps=steps,
        output=record.output,
        error=record.error,
        finished_at=record.finished_at,
    )


def _stale(view: RunView, event: RunEvent) -> bool:
    """News of an earlier attempt than its step's current one: the step has moved on."""
    step = view.steps.get(event.step_id) if event.step_id is not None else None
    return step is not None and event.attempt is not None and event.attempt < step.attempt


def _stopped(step: StepView, at: datetime) -> StepView:
    status = stopped_status(step.status)
    if status == step.status:
        return step
    finished_at = at if step.status in ACTIVE else step.finished_at
    return replace(step, status=status, finished_at=finished_at)


# --- what each step event adds to the status and attempt ----------------------------------


def _ready(step: StepView, event: RunEvent) -> StepView:
    # A new attempt: nothing of the last one (its error, its clock) carries over.
    payload = payload_or_none(event)
    fallback = None
    if isinstance(payload, StepReadyData) and payload.fallback:
        fallback = payload.provider
    return StepView(step.step_id, step.status, step.attempt, ready_at=event.ts, fallback=fallback)


def _started(step: StepView, event: RunEvent) -> StepView:
    # What it said while it waited to start ("waiting for <provider> budget") is over.
    return replace(step, started_at=event.ts, finished_at=None, message="", duration_s=None)


def _progress(step: StepView, event: RunEvent) -> StepView:
    payload = payload_or_none(event)
    text = payload.text if isinstance(payload, StepProgressData) else ""
    return replace(step, message=text)


def _succeeded(step: StepView, event: RunEvent) -> StepView:
    payload = payload_or_none(event)
    reused = isinstance(payload, StepSucceededData) and payload.reused
    reused_from = payload.reused_from if isinstance(payload, StepSucceededData) else None
    duration = payload.duration_s if isinstance(payload, StepSucceededData) else None
    return replace(
        step,
        finished_at=event.ts,
        error=None,
        retry_delay_s=None,
        reused=reused,
        reused_from=reused_from,
        message="",
        duration_s=duration,
    )


def _failed(step: StepView, event: RunEvent) -> StepView:
    payload = payload_or_none(event)
    error = payload.error if isinstance(payload, StepFailedData) else None
    duration = payload.duration_s if isinstance(payload, StepFailedData) else None
    return replace(step, finished_at=event.ts, error=error, message="", duration_s=duration)


def _retrying(step: StepView, event: RunEvent) -> StepView:
    payload = payload_or_none(event)
    delay = payload.delay_s if isinstance(payload, StepRetryingData) else None
    return replace(step, retry_delay_s=delay)


_DETAILS: Mapping[str, Callable[[StepView, RunEvent], StepView]] = {
    "step_ready": _ready,
    "step_started": _started,
    "step_progress": _progress,
    "step_succeeded": _succeeded,
    "step_failed": _failed,
    "step_retrying": _retrying,
}
