"""What the coordinator asks its driver to do: the commands out of :class:`RunState`.

A driver (a backend, the coordinator service) executes the commands of each transition in
the order given (:func:`agentic.recording.reactions.reactions` turns them into the driver's
calls): a failure is recorded (:class:`RecordFailure`) before the event that reports it, a
final failure committed (:class:`CommitFailure`) before the run finishes, and every
:class:`Emit` of a transition comes before the :class:`Dispatch` or :class:`Terminate` it
announces, so recorded events stay in causal order. Every decision is a command: a driver
decides nothing, it carries out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from agentic.contracts import EventType, StepError

FinishStatus = Literal["succeeded", "failed", "cancelled"]


@dataclass(frozen=True)
class Dispatch:
    """Run ``attempt`` of ``step_id`` now.

    Attributes:
        step_id: The step to run.
        attempt: 1 for the first attempt; never repeated for a step within one machine.
        prior_steps: The step's context steps, in context order: the step sees their
            committed outputs, which its runtime reads from the run store (by reference:
            ``agentic.materialize.with_prior_steps``).
        timeout_s: How long the driver lets the attempt run before reporting a timeout.
        provider: The agent provider the attempt runs on (None: the task's own); after a
            provider failure, the next one of its fallback chain.
    """

    step_id: str
    attempt: int
    prior_steps: tuple[str, ...]
    timeout_s: float
    provider: str | None = None


@dataclass(frozen=True)
class ScheduleRetry:
    """Call :meth:`RunState.on_retry_due` for ``step_id`` after ``delay_s`` seconds."""

    step_id: str
    next_attempt: int
    delay_s: float


@dataclass(frozen=True)
class Terminate:
    """Stop ``attempt`` of ``step_id`` (kill the process, delete the Job); its result is moot."""

    step_id: str
    attempt: int


@dataclass(frozen=True)
class RecordFailure:
    """Write ``attempt`` of ``step_id`` as a failed attempt with ``error``.

    For a failure the step could not record itself (it timed out, crashed, could not start
    or be queued, ran out of deliveries, or was refused): the attempt file is where every
    reader, and a restarted coordinator, finds it.
    """

    step_id: str
    attempt: int
    error: StepError
    provider: str | None = None


@dataclass(frozen=True)
class CommitFailure:
    """Commit ``attempt``'s failed attempt as the step's result: no attempt follows it."""

    step_id: str
    attempt: int


@dataclass(frozen=True)
class FinishRun:
    """The run is over; the machine ignores every later event."""

    status: FinishStatus
    output: str | None = None
    error: str | None = None
    review: dict[str, Any] | None = None


@dataclass(frozen=True)
class Emit:
    """Publish or record one run event (DESIGN §3 ``RunEvent``; the driver adds seq and ts).

    Attributes:
        type: The event type.
        step_id: The step it is about, if any.
        attempt: The attempt it is about, if any.
        data: Event payload (errors, delays, outputs of finished runs).
        from_worker: True when the event restates what the worker running the attempt
            reported (``step_started``, ``step_succeeded``, ``step_failed`` of a worker's own
            failure). Drivers whose workers publish their own events (``nats``) skip these;
            drivers whose steps cannot publish (``subprocess``, ``kubernetes``) record all.
    """

    type: EventType
    step_id: str | None = None
    attempt: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    from_worker: bool = False


Command = Dispatch | ScheduleRetry | Terminate | RecordFailure | CommitFailure | FinishRun | Emit
"""Any command :class:`RunState` returns."""
