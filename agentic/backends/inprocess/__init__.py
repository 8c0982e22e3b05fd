"""The ``inprocess`` backend (the default): the whole workflow as one CrewAI ``kickoff()``.

CrewAI runs the crew in this process with its own context passing between tasks, so a run
needs no broker and no child process. The run is still recorded like any other:

* every step's ``spec.json`` is written when the step becomes ready, materialized exactly
  as the other backends materialize it (prior outputs merged), so a run can be shown and
  replayed on any backend;
* every task's StepResult is written as attempt 1 and committed as the step's result the
  moment the task completes, in one write (:meth:`~agentic.store.RunStore.commit_attempt`),
  so a crash later leaves the finished steps in the store;
* ``run.json`` and the run events follow the coordinator state machine, as on the other
  backends: ``step_ready``, ``step_started``, ``step_succeeded`` / ``step_failed``, then
  ``succeeded`` with the last step's output or ``failed`` naming the step. Events are
  handed over as they happen; ``run.json`` snapshots less than
  :data:`~agentic.backends.inprocess.writebehind.RUN_INTERVAL_S` apart are coalesced into
  the newest (:mod:`agentic.backends.inprocess.writebehind`), and the final one is written
  before ``run`` returns.

Every write is fsync'd and done on a background thread, in order; all of them are in the
store when ``run`` returns.

A replay (``reused`` results) kicks off the crew of the remaining tasks only, with the
reused outputs written into the descriptions of the tasks that see them
(:mod:`agentic.backends.inprocess.reuse`): no model is called for a reused step.

Semantics that differ from the step-per-process backends, because CrewAI's whole-crew
kickoff cannot restart one task: **no per-step retries** (a failed task fails the run; use
``subprocess``, ``kubernetes`` or ``nats`` for retries) and **no per-step timeouts**.
Ctrl-C ends the kickoff and the run is recorded ``cancelled``; so does ``agentic cancel``
from another process when the run is driven from the main thread (it interrupts the kickoff
the same way, see :mod:`agentic.recording.cancel`). A model call that never answers does
not hold it: CrewAI makes the call on an executor thread, and the interrupt is repeated
until it ends ``asyncio.run``'s wait for that thread; the CLI then exits without waiting
for the abandoned call (``agentic.cli.main``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from agentic.backends.base import EventCallback
from agentic.backends.inprocess.reuse import remaining_crew
from agentic.backends.inprocess.writebehind import WriteBehindStore
from agentic.contracts import RunRecord, StepError, StepResult, StepSpec, WorkflowConfig
from agentic.coordinator import (
    Command,
    CommitFailure,
    Dispatch,
    RecordFailure,
    ScheduleRetry,
    Terminate,
)
from agentic.errors import ConfigError, StepFailure
from agentic.recording.attempts import record_failure
from agentic.recording.cancel import (
    CANCELLED_BY_INTERRUPT,
    MainThreadInterrupter,
    cancel_scope,
)
from agentic.recording.journal import JournalTransport, RunJournal, start_run
from agentic.recording.outcome import failed_attempt
from agentic.recording.reactions import reactions
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.store import RunStore


class InprocessBackend:
    """Runs a workflow as one CrewAI crew in the calling thread."""

    name = "inprocess"

    def run(
        self,
        record: RunRecord,
        store: RunStore,
        settings: Settings,
        on_event: EventCallback,
        *,
        reused: Mapping[str, StepResult] | None = None,
    ) -> RunRecord:
        """Run ``record`` to its end; see the module docstring for what is recorded.

        ``reused``: succeeded results of an earlier run to take over by step id (replay):
        committed to this run marked ``reused_from``; the crew runs only the other tasks.
        """
        reused = dict(reused or {})
        started = start_run(record, store, settings, reused=reused, adapt=without_retries)
        state = started.state
        # The kickoff must not wait for fsync'd writes: they go in order on a writer thread.
        with WriteBehindStore(store) as writes:
            deferred = cast("RunStore", writes)
            journal = RunJournal(deferred, record, state, on_event)
            recorder = _Recorder(deferred, settings, started.specs, journal)
            recorder.execute(started.commands)
            if not state.finished:
                journal.start()
            crew, literal = remaining_crew(
                started.workflow,
                started.specs,
                reused,
                max_chars=settings.prior_output_max_chars,
            )
            interrupter = MainThreadInterrupter(store, cancel_scope(record))
            try:
                with interrupter:
                    if not state.finished:
                        _kickoff(record, store, recorder, crew, {**literal, **record.inputs})
            except KeyboardInterrupt:
                recorder.execute(state.on_cancel(interrupter.reason or CANCELLED_BY_INTERRUPT))
        return journal.record


def without_retries(wf: WorkflowConfig) -> WorkflowConfig:
    """``wf`` with ``retries: 0`` on every task: a kickoff cannot retry one task."""
    tasks = [task.model_copy(update={"retries": 0}) for task in wf.tasks]
    return wf.model_copy(update={"tasks": tasks})


def _kickoff(
    record: RunRecord,
    store: RunStore,
    recorder: _Recorder,
    crew: WorkflowConfig,
    inputs: Mapping[str, str],
) -> None:
    # Importing the runtime imports CrewAI (seconds): before the first step "starts".
    from agentic import runtime

    runtime.setup()
    from agentic.runtime.crew import execution_order, run_workflow_inprocess
    from agentic.runtime.results import step_error_from

    recorder.crew_order = [task.id for task in execution_order(crew)]
    recorder.crew_reached(0)
    # run.json shows the first step running (later ones: saved as the step before ends).
    recorder.journal.save()
    try:
        run_workflow_inprocess(
            crew,
            run_id=record.run_id,
            inputs=inputs,
            on_step=recorder.on_step,
            store=store,
        )
    except StepFailure:
        pass  # on_step received the failed task's result; the run is already failed
    except Exception as exc:  # the crew could not be built: no task ran
        recorder.crew_failed(step_error_from(exc))


class _Recorder(JournalTransport):
    """Feeds each finished task into the state machine and records what it commands."""

    def __init__(
        self,
        store: RunStore,
        settings: Settings,
        specs: dict[str, StepSpec],
        journal: RunJournal,
    ) -> None:
        self.crew_order: list[str] = []
        self._journal = journal
        self._store = store
        self._settings = settings
        self._specs = specs
        self._state = journal.state

    def on_step(self, result: StepResult) -> None:
        """A task of the crew finished: record it, advance the run, save ``run.json`` once."""
        self._store.commit_attempt(result)
        if result.status == "succeeded":
            self.execute(
                self._state.on_step_succeeded(result.step_id, result.attempt, result.output)
            )
            self.crew_reached(self.crew_order.index(result.step_id) + 1)
        else:
            self.execute(self._state.on_step_failed(result.step_id, result.attempt, result.failure))
        if not self._state.finished:
            self.journal.save()

    def crew_reached(self, position: int) -> None:
        """CrewAI starts the task at ``position`` of its sequential order next."""
        if position < len(self.crew_order) and not self._state.finished:
            self.execute(self._state.on_step_started(self.crew_order[position], 1))

    def crew_failed(self, error: StepError) -> None:
        """The crew failed outside any task: record the error on the step about to run."""
        running = [s.step_id for s in self._state.snapshot() if s.status == "running"]
        if not running:
            return
        result = failed_attempt(self.journal.record.run_id, running[0], 1, error)
        self.on_step(result)

    def execute(self, commands: list[Command]) -> None:
        """Record a transition: events, the specs of dispatched steps, the run's end.

        The step snapshot in ``run.json`` is saved by the callers, once per finished task
        rather than once per transition: every store write is fsync'd, and the kickoff waits.
        """
        for call in reactions(commands, self):
            call()

    # --- commands (agentic.recording.reactions.Transport) -------------------------------

    def record_failure(self, command: RecordFailure) -> None:
        record_failure(self._store, self.journal.record.run_id, command)

    def commit_failure(self, command: CommitFailure) -> None:
        """Nothing left to do: :meth:`on_step` commits every task's result, failures too."""

    def dispatch(self, command: Dispatch) -> None:
        self._write_spec(command)

    def terminate(self, command: Terminate) -> None:
        """The kickoff is one call: a task cannot be stopped alone (and the machine only
        terminates steps of a run that is ending, which Ctrl-C or the error ends anyway)."""

    def schedule_retry(self, command: ScheduleRetry) -> None:
        raise AssertionError("an in-process run has no retries (retries: 0 on every task)")


def create_backend(**options: object) -> InprocessBackend:
    """The ``inprocess`` backend; it takes no options."""
    if options:
        raise ConfigError(f"the inprocess backend takes no options, got {sorted(options)}")
    return InprocessBackend()
