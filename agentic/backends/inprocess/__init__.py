"""The ``inprocess`` backend (the default): the workflow as a CrewAI ``kickoff()``.

CrewAI runs the crew in this process with its own context passing between tasks, so a run
needs no broker and no child process. The run is still recorded like any other:

* every step's ``spec.json`` is written when the step becomes ready, materialized exactly
  as the other backends materialize it (prior outputs merged), so a run can be shown and
  replayed on any backend;
* every task's StepResult is written as its attempt the moment the task completes, and
  committed as the step's result in the same write when it is final (a success, or a
  failure no retry follows: :meth:`~agentic.store.RunStore.commit_attempt`), so a crash
  later leaves the finished steps in the store;
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

Retries, timeouts and fallback follow the same state machine as the other backends.
CrewAI's kickoff cannot restart one task, so a failed task ends its kickoff; when the
machine retries it, the rest of the workflow (the failed task onwards, its attempt number
raised, on the next provider of its fallback chain after a provider failure) is kicked off
as a new crew once the retry is due, with the outputs of the steps done so far written in
as a replay's are. A task past its ``timeout_s`` is interrupted as Ctrl-C interrupts a
kickoff (:class:`~agentic.recording.cancel.MainThreadInterrupter` arms a deadline when the
task starts) and recorded as a ``StepTimeout``; the model call it waited for is abandoned
on CrewAI's executor thread. Interrupting needs the main thread: a run driven from another
thread has no timeouts (and no ``agentic cancel``).

Ctrl-C ends the kickoff and the run is recorded ``cancelled``; so does ``agentic cancel``
from another process when the run is driven from the main thread (it interrupts the kickoff
the same way, see :mod:`agentic.recording.cancel`). A model call that never answers does
not hold it: CrewAI makes the call on an executor thread, and the interrupt is repeated
until it ends ``asyncio.run``'s wait for that thread; the CLI then exits without waiting
for the abandoned call (``agentic.cli.main``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from agentic.backends.base import EventCallback
from agentic.backends.inprocess.reuse import remaining_crew
from agentic.backends.inprocess.writebehind import WriteBehindStore
from agentic.budget import LOCAL, LocalLease, waiting_note
from agentic.contracts import (
    RunRecord,
    StepError,
    StepResult,
    StepSpec,
    Usage,
    WorkflowConfig,
)
from agentic.contracts.events import StepProgressData
from agentic.coordinator import (
    Command,
    CommitFailure,
    Dispatch,
    Emit,
    RecordFailure,
    ScheduleRetry,
    Terminate,
)
from agentic.errors import ConfigError, StepFailure
from agentic.hierarchical import CREW_STEP
from agentic.recording.attempts import record_failure, storable
from agentic.recording.cancel import (
    CANCELLED_BY_INTERRUPT,
    MainThreadInterrupter,
    cancel_scope,
)
from agentic.recording.journal import JournalTransport, RunJournal, dispatched_spec, start_run
from agentic.recording.outcome import failed_attempt
from agentic.recording.reactions import reactions
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.store import RunStore


class InprocessBackend:
    """Runs a workflow as CrewAI crews in the calling thread (see the module docstring)."""

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
        started = start_run(record, store, settings, reused=reused)
        state = started.state
        # The kickoff must not wait for fsync'd writes: they go in order on a writer thread.
        with WriteBehindStore(store) as writes:
            deferred = cast("RunStore", writes)
            journal = RunJournal(deferred, record, state, on_event)
            interrupter = MainThreadInterrupter(store, cancel_scope(record))
            recorder = _Recorder(deferred, settings, started.specs, journal, interrupter)
            recorder.execute(started.commands)
            if not state.finished:
                journal.start()
            try:
                with interrupter:
                    _drive(record, store, recorder, started.workflow)
            except KeyboardInterrupt:
                recorder.execute(state.on_cancel(interrupter.reason or CANCELLED_BY_INTERRUPT))
        return journal.record


def _drive(
    record: RunRecord,
    store: RunStore,
    recorder: _Recorder,
    workflow: WorkflowConfig,
) -> None:
    """Kick off crews until the run ends: the whole workflow (less its reused steps), then
    after each failure the machine retries the rest of it, once the retry is due."""
    state = recorder.journal.state
    while not state.finished:
        due = recorder.next_retry()
        if due is not None:
            step_id, at = due
            _sleep_until(at)  # a cancel or Ctrl-C interrupts the wait
            recorder.retry_due(step_id)
            continue
        crew, literal = remaining_crew(
            workflow,
            recorder.base_specs,
            state.outputs(),
            max_chars=recorder.prior_output_max_chars,
            providers=recorder.providers(),
        )
        try:
            _kickoff(record, store, recorder, crew, {**literal, **record.inputs})
        except KeyboardInterrupt:
            timed_out = recorder.interrupter.timed_out
            if timed_out is None:
                raise  # a cancel or Ctrl-C: the run ends
            recorder.interrupter.surfaced()
            recorder.execute(state.on_timeout(timed_out.step_id, timed_out.attempt))


def _sleep_until(at: float) -> None:
    while (left := at - time.monotonic()) > 0:
        time.sleep(min(left, 0.25))


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
    from agentic.runtime.crew import CrewStopped, execution_order, run_workflow_inprocess
    from agentic.runtime.results import step_error_from

    if crew.crew is not None and crew.task_sequence[:1] == [CREW_STEP]:
        _crew_step(store, recorder)  # a hierarchical crew: its one step, then the rest
        return
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
            attempts=recorder.attempts(),
        )
    except (StepFailure, CrewStopped):
        pass  # on_step received the task's result; the machine decided what follows
    except Exception as exc:  # the crew could not be built: no task ran
        recorder.crew_failed(step_error_from(exc))
    finally:
        recorder.interrupter.disarm()
        recorder.release_budget(None)  # a task that was stopped: what it spent is unknown


def _crew_step(store: RunStore, recorder: _Recorder) -> None:
    """Run the one step of a hierarchical crew (:mod:`agentic.hierarchical`) as every
    backend runs it, :func:`~agentic.runtime.step.execute_step` of its dispatched spec, in
    this thread: a timeout or a cancel interrupts it as it interrupts a kickoff."""
    from agentic.runtime.step import execute_step

    recorder.crew_order = [CREW_STEP]
    recorder.crew_reached(0)
    recorder.journal.save()
    try:
        result = execute_step(recorder.spec_of(CREW_STEP), store=store)
    finally:
        recorder.interrupter.disarm()
    recorder.on_step(result)


class _Recorder(JournalTransport):
    """Feeds each finished task into the state machine and records what it commands."""

    def __init__(
        self,
        store: RunStore,
        settings: Settings,
        specs: dict[str, StepSpec],
        journal: RunJournal,
        interrupter: MainThreadInterrupter,
    ) -> None:
        self.crew_order: list[str] = []
        self.interrupter = interrupter
        self._journal = journal
        self._store = store
        self._settings = settings
        self._specs = specs
        self._state = journal.state
        self._dispatched: dict[str, Dispatch] = {}
        self._retries: dict[str, float] = {}  # step -> monotonic time its retry is due
        self._results: dict[tuple[str, int], StepResult] = {}
        self._lease: LocalLease | None = None

    # --- what the next crew runs ----------------------------------------------------------

    @property
    def base_specs(self) -> dict[str, StepSpec]:
        """Each step's spec as materialized (attempt 1, no prior outputs)."""
        return self._specs

    @property
    def prior_output_max_chars(self) -> int:
        return self._settings.prior_output_max_chars

    def spec_of(self, step_id: str) -> StepSpec:
        """The spec of the attempt of ``step_id`` dispatched last, as written to the store."""
        command = self._dispatched[step_id]
        return dispatched_spec(self._specs[step_id], command, self._settings, self._state.workflow)

    def attempts(self) -> dict[str, int]:
        """The attempt each dispatched step runs as (a step dispatched later: its first)."""
        return {step_id: command.attempt for step_id, command in self._dispatched.items()}

    def providers(self) -> dict[str, str]:
        """Steps whose next attempt runs on a fallback provider, and that provider."""
        return {
            step_id: command.provider
            for step_id, command in self._dispatched.items()
            if command.provider is not None
        }

    def next_retry(self) -> tuple[str, float] | None:
        """The step whose retry is due first and when, if no dispatched step waits to run."""
        if not self._retries:
            return None
        step_id = min(self._retries, key=self._retries.__getitem__)
        return step_id, self._retries[step_id]

    def retry_due(self, step_id: str) -> None:
        del self._retries[step_id]
        self.execute(self._state.on_retry_due(step_id))

    # --- events from the crew -------------------------------------------------------------

    def on_step(self, result: StepResult) -> bool:
        """A task of the crew finished: record it, advance the run, save ``run.json`` once.

        Returns whether the crew should go on (not when the run ended on a success: its
        cost passed its limit)."""
        self.interrupter.disarm()
        self.release_budget(result.usage)
        result = storable(result, self._store.max_doc_bytes)
        self._results[result.step_id, result.attempt] = result
        self.journal.attempt_ended(result)
        if result.status == "succeeded" or not result.failure.retryable:
            self._store.commit_attempt(result)
        else:  # the machine may retry it; a last failure is committed by CommitFailure
            self._store.write_attempt(result)
        step_id, attempt, cost = result.step_id, result.attempt, result.usage.cost_usd
        if result.status == "succeeded":
            self.execute(
                self._state.on_step_succeeded(step_id, attempt, result.output, cost_usd=cost)
            )
            self.crew_reached(self.crew_order.index(step_id) + 1)
        else:
            self.execute(
                self._state.on_step_failed(step_id, attempt, result.failure, cost_usd=cost)
            )
        if not self._state.finished:
            self.journal.save()
        return not self._state.finished

    def crew_reached(self, position: int) -> None:
        """CrewAI starts the task at ``position`` of its sequential order next."""
        if position >= len(self.crew_order) or self._state.finished:
            return
        step_id = self.crew_order[position]
        command = self._dispatched.get(step_id)
        if command is None:
            return
        self._admit(step_id, command.attempt)
        self.execute(self._state.on_step_started(step_id, command.attempt))
        self.interrupter.arm(step_id, command.attempt, command.timeout_s)

    def _admit(self, step_id: str, attempt: int) -> None:
        """Wait for the budget of the step's provider (agentic.budget), before its clock
        starts; a cancel or Ctrl-C interrupts the wait."""
        provider = self._state.workflow.provider(self._state.provider_of(step_id))
        if provider.limits is None:
            return

        def waiting() -> None:
            data = StepProgressData(message=waiting_note(provider.id)).as_data()
            self.execute([Emit("step_progress", step_id, attempt, data)])

        self._lease = LOCAL.acquire(provider.id, provider.limits, waiting=waiting)

    def release_budget(self, usage: Usage | None) -> None:
        """The running step ended (or was stopped): its budget is free again."""
        lease, self._lease = self._lease, None
        if lease is not None:
            LOCAL.release(lease, usage)

    def crew_failed(self, error: StepError) -> None:
        """The crew failed outside any task: record the error on the step about to run."""
        running = [s for s in self._state.snapshot() if s.status == "running"]
        if not running:
            return
        step = running[0]
        provider = self._state.provider_of(step.step_id)
        result = failed_attempt(
            self.journal.record.run_id, step.step_id, step.attempt, error, provider=provider
        )
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
        result = record_failure(self._store, self.journal.record.run_id, command)
        self._results[command.step_id, command.attempt] = result
        self.journal.attempt_ended(result)

    def commit_failure(self, command: CommitFailure) -> None:
        """Commit the step's last failure (a fatal one was committed as it was recorded)."""
        result = self._results.get((command.step_id, command.attempt))
        if result is not None and result.failure.retryable:
            self._store.commit_result(result)

    def dispatch(self, command: Dispatch) -> None:
        self._dispatched[command.step_id] = command
        self._write_spec(command)

    def terminate(self, command: Terminate) -> None:
        """A task of a kickoff cannot be stopped alone: a timed-out one was interrupted
        (the kickoff with it), and the machine terminates the others only when the run
        ends, which the error or the cancel ends anyway."""

    def schedule_retry(self, command: ScheduleRetry) -> None:
        self._retries[command.step_id] = time.monotonic() + command.delay_s


def create_backend(**options: object) -> InprocessBackend:
    """The ``inprocess`` backend; it takes no options."""
    if options:
        raise ConfigError(f"the inprocess backend takes no options, got {sorted(options)}")
    return InprocessBackend()
