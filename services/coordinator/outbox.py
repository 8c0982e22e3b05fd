"""What a coordinator's run driver sends out: one run's commands carried out over the bus.

:class:`RunOutbox` is the :class:`~agentic.recording.reactions.Transport` of a
:class:`~services.coordinator.runs.RunDriver`: it publishes the signed StepSpec right behind
the ``step_ready`` that announces it (``Nats-Msg-Id = <run>.<step>.<attempt>``), publishes the
run's other events (unless a worker already did: ``from_worker``), sends signed kill
notices, arms retry timers, writes failed attempts and final failures, and keeps
``run.json``: the specs of the attempts just dispatched are written with the transition's
snapshot, and the final ``run.json`` before the terminal event, so a client that sees
``succeeded`` reads a finished run. Its I/O goes through
:class:`~services.coordinator.effects.DriverEffects`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from agentic import tracing
from agentic.contracts import RunRecord, StepError, StepSpec, StepState, utcnow
from agentic.coordinator import (
    CommitFailure,
    Dispatch,
    Emit,
    FinishRun,
    RecordFailure,
    ScheduleRetry,
    Terminate,
)
from agentic.materialize import SpecFactory
from agentic.recording.journal import dispatched_spec
from services.coordinator.effects import Deps, DriverEffects
from services.coordinator.timers import RunTimers

log = logging.getLogger(__name__)


class RunOutbox:
    """Carries out one run's commands and keeps its ``run.json`` (see the module docstring).

    Args:
        record: The run as stored.
        specs: Builds each step's attempt-1 spec when it is dispatched.
        deps: The coordinator's settings and callbacks.
        effects: The run's I/O.
        timers: The run's timers.
        steps: The state machine's step snapshot, now.
        retry_due: What a retry timer calls back.
    """

    def __init__(
        self,
        record: RunRecord,
        specs: SpecFactory,
        deps: Deps,
        effects: DriverEffects,
        timers: RunTimers,
        *,
        steps: Callable[[], list[StepState]],
        retry_due: Callable[[str], Coroutine[Any, Any, None]],
    ) -> None:
        self.record = record
        self.effects = effects
        self.timeouts_s: dict[str, float] = {}
        # Attempts a worker holds while a restored run's first transition runs (see resume).
        self.held: set[tuple[str, int]] = set()
        # Dispatches this transition could not queue, and why (the driver fails them after).
        self.unpublishable: list[tuple[Dispatch, StepError]] = []
        self._factory = specs
        self._deps = deps
        self._timers = timers
        self._steps = steps
        self._retry_due = retry_due
        self._unwritten: list[StepSpec] = []
        # When each attempt was queued and when its worker reported it started: a failure
        # the coordinator records for it (a timeout) shows them (`agentic show`).
        self._queued_at: dict[tuple[str, int], datetime] = {}
        self._started_at: dict[tuple[str, int], datetime] = {}

    @property
    def has_unwritten_specs(self) -> bool:
        return bool(self._unwritten)

    def started(self, step_id: str, attempt: int, at: datetime) -> None:
        """A worker reported ``attempt`` of ``step_id`` started at ``at``."""
        self._started_at[step_id, attempt] = at

    async def record_failure(self, command: RecordFailure) -> None:
        key = (command.step_id, command.attempt)
        await self.effects.record_failure(
            command,
            queued_at=self._queued_at.pop(key, None),
            started_at=self._started_at.pop(key, None),
        )

    async def commit_failure(self, command: CommitFailure) -> None:
        await self.effects.commit_failure(command)

    async def ready(self, announce: Emit, command: Dispatch) -> None:
        await self._queue(command, announce)

    async def emit(self, command: Emit) -> None:
        if not command.from_worker:
            await self.effects.publish(command)

    async def dispatch(self, command: Dispatch) -> None:
        await self._queue(command, None)

    async def terminate(self, command: Terminate) -> None:
        self._timers.disarm(command.step_id)
        await self.effects.send_kill(command.step_id, command.attempt)

    async def schedule_retry(self, command: ScheduleRetry) -> None:
        step_id = command.step_id
        self._timers.schedule_retry(step_id, command.delay_s, lambda: self._retry_due(step_id))

    async def finish(self, command: FinishRun) -> None:
        if self.record.finished_at is not None:
            return
        self._timers.close()
        await self.save(
            status=command.status,
            output=command.output,
            error=command.error,
            review=command.review,
            finished_at=utcnow(),
        )
        log.info("run %s %s", self.record.run_id, command.status)
        self._deps.finished(self.record.run_id)

    async def save(self, **changes: object) -> None:
        """Write the specs dispatched since the last save, then ``run.json`` with the step
        snapshot and ``changes``."""
        self._timers.snapshot_done()
        self.record = self.record.model_copy(
            update={**changes, "steps": self._steps(), "updated_at": utcnow()}
        )
        specs, self._unwritten = self._unwritten, []
        await self.effects.write_run(self.record, specs)

    async def write_specs(self) -> None:
        """Write the specs dispatched since the last write (``run.json`` waits)."""
        specs, self._unwritten = self._unwritten, []
        await self.effects.write_specs(specs)

    async def _queue(self, command: Dispatch, announce: Emit | None) -> None:
        spec = self._spec_of(command)
        if (command.step_id, command.attempt) in self.held:
            return  # already with a worker (see RunDriver.resume): not published again
        self._queued_at[command.step_id, command.attempt] = utcnow()
        with _dispatch_span(self.record, spec):  # the step message carries it on
            if announce is not None:
                failure = await self.effects.ready(announce, spec)
            else:
                failure = await self.effects.dispatch(spec)
        if failure is not None:
            self.unpublishable.append((command, failure))

    def _spec_of(self, command: Dispatch) -> StepSpec:
        """The spec of the attempt ``command`` dispatches (written with the snapshot)."""
        self.timeouts_s[command.step_id] = command.timeout_s
        base = self._factory.spec(command.step_id)
        spec = dispatched_spec(base, command, self._deps.settings, self._factory.workflow)
        self._unwritten.append(spec)
        return spec


def _dispatch_span(record: RunRecord, spec: StepSpec) -> contextlib.AbstractContextManager[Any]:
    """The span of one attempt's dispatch, in its run's trace (none for a run without one:
    docs/observability.md, "Traces")."""
    parent = tracing.TraceParent.parse(record.traceparent)
    if parent is None:
        return contextlib.nullcontext()
    attributes: dict[str, tracing.AttributeValue | None] = {
        "agentic.run_id": spec.run_id,
        "agentic.step_id": spec.step_id,
        "agentic.attempt": spec.attempt,
        "agentic.pool": spec.pool,
    }
    name = f"dispatch {spec.step_id}"
    return tracing.span(name, parent=parent, kind="producer", attributes=attributes)
