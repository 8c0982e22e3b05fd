"""What every local backend records about a run while it drives it.

:class:`RunJournal` turns the coordinator's :class:`~agentic.coordinator.Emit` commands into
:class:`~agentic.contracts.RunEvent` s (``seq`` increasing from 0, handed to ``on_event`` in
order) and keeps ``run.json`` up to date: ``running`` with step snapshots while the run
goes, then the final status, output, error and ``finished_at``.

:func:`dispatched_spec` builds the spec of a dispatched attempt, so every backend writes the
same ``spec.json`` for the same step.

The two drivers of this process (the local step loop and the in-process crew) share how a
run starts (:func:`start_run`) and the journal side of their transport
(:class:`JournalTransport`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentic.contracts import (
    DriverInfo,
    RunEvent,
    RunHeadline,
    RunRecord,
    StepResult,
    StepSpec,
    WorkflowConfig,
    utcnow,
)
from agentic.coordinator import Command, Dispatch, Emit, FinishRun, RunState
from agentic.errors import ConfigError
from agentic.processes import is_gone, this_process
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.store import RunStore

ENDS_OF_ATTEMPTS = ("step_succeeded", "step_failed")
"""The events that report an attempt's end (with its ``duration_s`` when it is known)."""

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
        self._durations: dict[tuple[str, int], float] = {}

    def attempt_ended(self, result: StepResult) -> None:
        """Note how long ``result``'s attempt ran: the event that reports its end says so
        (``duration_s``), and the live progress shows what ``agentic show`` shows."""
        duration = result.timing.duration_s
        if duration is not None:
            self._durations[result.step_id, result.attempt] = duration

    def emit(self, command: Emit) -> RunEvent:
        """Publish ``command`` as the run's next event."""
        data = command.data
        if command.type in ENDS_OF_ATTEMPTS and command.step_id is not None:
            duration = self._durations.pop((command.step_id, command.attempt or 0), None)
            if duration is not None:
                data = {**data, "duration_s": duration}
        event = RunEvent(
            run_id=self.record.run_id,
            seq=self._seq,
            type=command.type,
            step_id=command.step_id,
            attempt=command.attempt,
            data=data,
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
        """Mark the run ``running``, driven by this process."""
        host, pid, started = this_process()
        return self.save(status="running", driver=DriverInfo(host=host, pid=pid, started=started))

    def finish(self, command: FinishRun) -> RunRecord:
        """Write the run's final status, output and error; ``run.json`` is final after this."""
        return self.save(
            status=command.status,
            output=command.output,
            error=command.error,
            review=command.review,
            finished_at=utcnow(),
        )


def abandoned(record: RunRecord | RunHeadline) -> bool:
    """Whether ``record`` is a run that nobody drives any more: ``running`` in the store, but
    the local process that drove it (``run.json``'s ``driver``) has ended. Only known on the
    driver's own host; runs that a coordinator drives have no ``driver``."""
    driver = record.driver
    if record.is_terminal or driver is None:
        return False
    return is_gone(driver.host, driver.pid, driver.started)


def dispatched_spec(
    base: StepSpec, command: Dispatch, settings: Settings, workflow: WorkflowConfig
) -> StepSpec:
    """The spec of the attempt ``command`` dispatches: its provider (a fallback's entry
    when the command names one), the steps whose outputs it sees, attempt set."""
    from agentic.materialize import with_attempt, with_prior_steps, with_provider

    spec = base
    if command.provider is not None:
        spec = with_provider(spec, workflow, command.provider, settings)
    if command.prior_steps:
        spec = with_prior_steps(
            spec,
            command.prior_steps,
            max_chars=settings.prior_output_max_chars,
            all_earlier=not workflow.uses_depends_on,
        )
    return with_attempt(spec, command.attempt) if command.attempt != spec.attempt else spec


@dataclass
class StartedRun:
    """A run whose steps are materialized and whose state machine has started."""

    workflow: WorkflowConfig
    """The record's workflow."""
    specs: dict[str, StepSpec]
    """Each step's base spec (attempt 1, no prior outputs), by step id."""
    state: RunState
    commands: list[Command]
    """The first transition's commands, for the driver to carry out."""


def start_run(
    record: RunRecord,
    store: RunStore,
    settings: Settings,
    *,
    reused: Mapping[str, StepResult],
    adapt: Callable[[WorkflowConfig], WorkflowConfig] | None = None,
) -> StartedRun:
    """Materialize ``record``'s steps, commit the ``reused`` results, start the machine.

    Args:
        adapt: Changes the workflow the machine runs (default: the record's own).

    Raises:
        ConfigError: the record has no workflow, or it cannot be materialized.
    """
    workflow = record.workflow
    if workflow is None:
        raise ConfigError(f"run {record.run_id!r} has no resolved workflow to execute")
    from agentic.materialize import materialize
    from agentic.recording.attempts import commit_reused

    specs = materialize(
        workflow,
        run_id=record.run_id,
        inputs=record.inputs,
        store_url=store.url,
        settings=settings,
    )
    commit_reused(store, record.run_id, reused)
    machine = adapt(workflow) if adapt else workflow
    state, commands = RunState.start(machine, record.run_id, settings, reused=reused)
    return StartedRun(workflow, {spec.step_id: spec for spec in specs}, state, commands)


class JournalTransport:
    """The part of a synchronous :class:`~agentic.recording.reactions.Transport` that the
    drivers of this process share: events and the run's end go to the :class:`RunJournal`,
    a ``step_ready`` goes out just before the attempt it announces, and a dispatched
    attempt's spec is written to the store (:meth:`_write_spec`) before the driver runs it.

    Subclasses set ``_store``, ``_settings``, ``_specs`` and ``_journal``, and write
    ``dispatch`` and the other commands.
    """

    _store: RunStore
    _settings: Settings
    _specs: dict[str, StepSpec]
    _journal: RunJournal | None

    @property
    def journal(self) -> RunJournal:
        """The journal of the run being driven."""
        assert self._journal is not None, "the driver is not running"
        return self._journal

    def dispatch(self, command: Dispatch) -> None:
        raise NotImplementedError

    def ready(self, announce: Emit, command: Dispatch) -> None:
        self.emit(announce)
        self.dispatch(command)

    def emit(self, command: Emit) -> None:
        self.journal.emit(command)

    def finish(self, command: FinishRun) -> None:
        self.journal.finish(command)

    def _write_spec(self, command: Dispatch) -> StepSpec:
        workflow = self.journal.state.workflow
        spec = dispatched_spec(self._specs[command.step_id], command, self._settings, workflow)
        self._store.write_spec(spec)
        return spec
