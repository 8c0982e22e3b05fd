"""What every local backend records about a run while it drives it.

:class:`RunJournal` turns the coordinator's :class:`~agentic.coordinator.Emit` commands into
:class:`~agentic.contracts.RunEvent` s (``seq`` increasing from 0, handed to ``on_event`` in
order) and keeps ``run.json`` up to date: ``running`` with step snapshots while the run
goes, then the final status, output, error and ``finished_at``.

:func:`dispatched_spec` builds the spec of a dispatched attempt, so every backend writes the
same ``spec.json`` for the same step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentic.contracts import RunEvent, RunRecord, StepSpec, utcnow
from agentic.coordinator import Dispatch, Emit, FinishRun, RunState
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.store import RunStore

EventCallback = Callable[[RunEvent], None]
"""Receives every run event as the driver records it (live progress in the CLI)."""


class RunJournal:
    """Records one run's events and ``run.json`` as the state machine advances.

    Args:
        store: The run store.
        record: The run as created; the journal keeps the latest version in :attr:`record`.
        state: The run's state machine (read for step snapshots).
        on_event: Receives every event, in order.
    """

    def __init__(
        self, store: RunStore, record: RunRecord, state: RunState, on_event: EventCallback
    ) -> None:
        self.record = record
        self.state = state
        self._store = store
        self._on_event = on_event
        self._seq = 0

    def emit(self, command: Emit) -> RunEvent:
        """Publish ``command`` as the run's next event."""
        event = RunEvent(
            run_id=self.record.run_id,
            seq=self._seq,
            type=command.type,
            step_id=command.step_id,
            attempt=command.attempt,
            data=command.data,
        )
        self._seq += 1
        self._on_event(event)
        return event

    def save(self, **changes: Any) -> RunRecord:
        """Write ``run.json`` with the current step snapshot and ``changes``."""
        self.record = self.record.model_copy(
            update={**changes, "steps": self.state.snapshot(), "updated_at": utcnow()}
        )
        self._store.write_run(self.record)
        return self.record

    def start(self) -> RunRecord:
        """Mark the run ``running``."""
        return self.save(status="running")

    def finish(self, command: FinishRun) -> RunRecord:
        """Write the run's final status, output and error; ``run.json`` is final after this."""
        return self.save(
            status=command.status,
            output=command.output,
            error=command.error,
            finished_at=utcnow(),
        )


def dispatched_spec(base: StepSpec, command: Dispatch, settings: Settings) -> StepSpec:
    """The spec of the attempt ``command`` dispatches: prior outputs merged, attempt set."""
    from agentic.materialize import with_attempt, with_prior_outputs

    spec = base
    if command.prior_outputs:
        spec = with_prior_outputs(
            spec, command.prior_outputs, max_chars=settings.prior_output_max_chars
        )
    return with_attempt(spec, command.attempt) if command.attempt != spec.attempt else spec
