"""One run on the bus: the coordinator state machine's commands, carried out over NATS.

A :class:`RunDriver` owns one run's :class:`~agentic.coordinator.RunState`, feeds it what
happens to the run (workers' events, timers, dead letters, refusals, cancel) and carries out
its commands through :func:`agentic.recording.reactions.reactions`, as every driver does. It
is the :class:`~agentic.recording.reactions.Transport` of the bus:

* ``Dispatch``: make sure the pool's ``workers-<pool>`` consumer exists, publish the signed
  StepSpec (``Nats-Msg-Id = <run>.<step>.<attempt>``) right behind the ``step_ready`` that
  announces it, and write its ``spec.json`` with the transition's ``run.json``;
* ``Emit``: publish the run event, unless a worker already did (``from_worker``);
* ``Terminate``: send a signed kill notice on ``agentic.control.terminate.<run_id>``;
* ``ScheduleRetry``: a timer that calls ``on_retry_due``;
* ``RecordFailure`` / ``CommitFailure``: the failed attempt's file, its commit;
* ``FinishRun``: the final ``run.json`` (written before the terminal event is published, so
  a client that sees ``succeeded`` reads a finished run).

Its I/O goes through a :class:`~services.coordinator.effects.DriverEffects` (NATS and the
store, or :class:`~services.coordinator.memory.MemoryEffects` in tests).

Every transition ends with ``run.json`` holding the step snapshot, but for one that only
marks a step running: that snapshot is written within :data:`SNAPSHOT_DELAY_S` (usually
by the step's end). A restart rebuilds runs from committed results and attempt files,
never from the snapshot. Step outcomes are always read from the store: events only say
where to look. A step's timeout is counted from its ``step_started`` (a step may wait in
the queue for a worker as long as it takes), plus :data:`TIMEOUT_MARGIN_S`, because the
worker enforces ``timeout_s`` itself and reports it; the coordinator's timer is the
backstop for a worker that cannot.
"""

from __future__ import annotations

import asyncio
import logging

from agentic.contracts import (
    RunEvent,
    RunRecord,
    StepError,
    StepResult,
    StepSpec,
    StepState,
    utcnow,
)
from agentic.coordinator import (
    Command,
    CommitFailure,
    Dispatch,
    Emit,
    FinishRun,
    RecordFailure,
    RunState,
    ScheduleRetry,
    Terminate,
)
from agentic.failures import DEAD_LETTERED, REFUSED
from agentic.materialize import SpecFactory
from agentic.recording.journal import dispatched_spec
from agentic.recording.outcome import attempt_outcome, committed_success
from agentic.recording.reactions import reactions
from services.coordinator.dead_letters import dead_letter_message
from services.coordinator.effects import Deps
from services.coordinator.timers import RunTimers
from services.coordinator.transitions import SeededLazily, is_current

log = logging.getLogger(__name__)

TIMEOUT_MARGIN_S = 5.0
# How long run.json may lag behind a step that started (see RunDriver._execute).
SNAPSHOT_DELAY_S = 1.0


class RunDriver:
    """Drives one run. Every public coroutine takes the run's lock: one transition at a time.

    Args:
        record: The run as stored, with its resolved workflow.
        specs: Builds each step's attempt-1 spec when it is dispatched (the workflow holds
            each provider once; specs are not kept).
        deps: The coordinator's settings, store, effects and task spawner.
    """

    def __init__(self, record: RunRecord, specs: SpecFactory, deps: Deps) -> None:
        self.record = record
        self._factory = specs
        self._deps = deps
        self._effects = deps.effects(record.run_id, deps)
        self._timers = RunTimers(deps.spawn, deps.leading)
        self._lock = asyncio.Lock()
        self._state: RunState | None = None
        self._timeouts_s: dict[str, float] = {}
        self._unwritten: list[StepSpec] = []
        self._unpublishable: list[tuple[Dispatch, StepError]] = []
        self._snapshot: list[StepState] | None = None
        # Attempts a worker holds while a restored run's first transition runs (see resume).
        self._held: set[tuple[str, int]] = set()

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def finished(self) -> bool:
        return self._state is not None and self._state.finished

    # --- starting ---------------------------------------------------------------------

    async def start(self, reused: dict[str, StepResult]) -> None:
        """Start the run: ``running`` (unless ``run.json`` was created so), ``planned``,
        then its first steps."""
        assert self.record.workflow is not None
        async with self._lock:
            state, commands = RunState.start(
                self.record.workflow,
                self.run_id,
                self._deps.settings,
                reused=reused,
                rng=SeededLazily(self.run_id).as_random(),
            )
            self._state = state
            if self.record.status != "running":
                await self._save(status="running")
            steps = list(self.record.workflow.task_sequence)
            await self._effects.publish(
                Emit("planned", data={"workflow": self.record.workflow.name, "steps": steps})
            )
            await self._execute(commands)

    async def resume(self, committed: dict[str, StepResult], attempts_seen: dict[str, int]) -> None:
        """Continue a run after a coordinator restart, from what the store holds.

        The restored run dispatches each ready step's next attempt. An attempt that a worker
        already reported started is not published again: its message stays in
        ``AGENTIC_STEPS`` until a worker acknowledges it (after the outcome is committed and
        reported) and is delivered again if that worker dies, so a second copy could only
        run the step twice (after the 2-minute Msg-Id window, dedup would not stop it). Such
        a step is marked running with its timeout armed, as if its ``step_started`` had just
        arrived; its ``spec.json`` is written again (the same bytes, in case the previous
        coordinator died before writing it).
        """
        assert self.record.workflow is not None
        async with self._lock:
            state, commands = RunState.restore(
                self.record.workflow,
                self.run_id,
                self._deps.settings,
                committed,
                attempts_seen,
                rng=SeededLazily(self.run_id).as_random(),
            )
            self._state = state
            self._held = await self._held_by_workers(commands)
            try:
                await self._execute(commands)
            finally:
                held, self._held = self._held, set()
            for step_id, attempt in sorted(held):
                current = self._step(step_id)
                if current is not None and not self.finished:
                    await self._on_started(current, attempt)

    async def _held_by_workers(self, commands: list[Command]) -> set[tuple[str, int]]:
        """The dispatches among ``commands`` whose attempt a worker reported started."""
        dispatches = [c for c in commands if isinstance(c, Dispatch)]
        if not dispatches:
            return set()
        started = await self._effects.started_attempts()
        return {(d.step_id, d.attempt) for d in dispatches if started.get(d.step_id) == d.attempt}

    # --- what happens to the run --------------------------------------------------------

    async def on_step_event(self, event: RunEvent) -> None:
        """A worker reported ``step_started``, ``step_succeeded`` or ``step_failed``.

        An event counts only for an attempt this run dispatched, and an outcome only when the
        store holds it for that very attempt (the event only says where to look): a forged
        or stale event changes nothing and is logged.
        """
        if event.step_id is None or event.attempt is None:
            return
        async with self._lock:
            current = self._step(event.step_id)
            if self.finished or current is None:
                return
            if not 1 <= event.attempt <= current.attempt:
                self._ignored(event, "not an attempt dispatched")
                return
            if event.type == "step_started":
                await self._on_started(current, event.attempt)
                return
            outcome = await self._effects.read(
                "reading a step result",
                attempt_outcome,
                self._deps.store,
                self.run_id,
                event.step_id,
                event.attempt,
            )
            if outcome is None or outcome.attempt != event.attempt:
                self._ignored(event, "the store holds no result of that attempt")
                return
            await self._apply(current, outcome)

    async def on_refused(self, seq: int, reason: str) -> bool:
        """A worker refused the step message at stream sequence ``seq`` (``+TERM``).

        Returns:
            True when ``seq`` is a message of this run; its step, if the refused attempt is
            still current, fails (not retryable: another worker would refuse it alike).
        """
        found = self._effects.queued.get(seq)
        if found is None:
            return False
        step_id, attempt = found
        message = f"a worker refused step {step_id!r} attempt {attempt}: {reason}"
        await self._fail_current(step_id, attempt, StepError(type=REFUSED, message=message))
        return True

    async def on_timeout(self, step_id: str, attempt: int) -> None:
        """The coordinator's timer of a running attempt ran out."""
        timers = self._timers
        if not timers.while_leading(
            timers.timeouts, step_id, lambda: self.on_timeout(step_id, attempt)
        ):
            return
        async with self._lock:
            current = self._step(step_id)
            if self.finished or current is None or not is_current(current, attempt):
                return
            done = await self._committed_success(step_id)
            if done is not None:  # committed just in time: the store wins
                await self._execute(self._machine.on_step_succeeded(step_id, attempt, done.output))
                return
            await self._execute(self._machine.on_timeout(step_id, attempt))

    async def on_retry_due(self, step_id: str) -> None:
        """A retry's backoff has passed."""
        timers = self._timers
        if not timers.while_leading(timers.retries, step_id, lambda: self.on_retry_due(step_id)):
            return
        async with self._lock:
            timers.retry_done(step_id)
            if not self.finished:
                await self._execute(self._machine.on_retry_due(step_id))

    async def on_dead_letter(self, spec: StepSpec, deliveries: int) -> str:
        """The attempt ``spec`` exhausted its deliveries: fail the step (and so the run).

        Returns:
            The error message, also the dead letter's reason.
        """
        message = dead_letter_message(spec, deliveries)
        error = StepError(type=DEAD_LETTERED, message=message)
        await self._fail_current(spec.step_id, spec.attempt, error)
        return message

    async def cancel(self, reason: str) -> bool:
        """Cancel the run; False when it had already finished."""
        async with self._lock:
            if self.finished:
                return False
            await self._execute(self._machine.on_cancel(reason))
            return True

    def close(self) -> None:
        """Stop every timer (the service is stopping; a restart restores the run)."""
        self._timers.close()

    # --- transitions ------------------------------------------------------------------

    async def _on_started(self, current: StepState, attempt: int) -> None:
        if not is_current(current, attempt):
            return
        # Every delivery restarts the clock: a redelivered attempt runs again from scratch.
        step_id = current.step_id
        timeout = self._timeouts_s.get(step_id, self._deps.settings.default_step_timeout_s)
        self._timers.arm_timeout(
            step_id, timeout + TIMEOUT_MARGIN_S, lambda: self.on_timeout(step_id, attempt)
        )
        await self._execute(self._machine.on_step_started(step_id, attempt), save_now=False)

    async def _apply(self, current: StepState, outcome: StepResult) -> None:
        step_id = current.step_id
        if outcome.status == "succeeded":
            # Whichever attempt committed it, the step is done: the store is the truth.
            self._settled(step_id)
            await self._execute(
                self._machine.on_step_succeeded(step_id, current.attempt, outcome.output)
            )
            return
        if outcome.attempt != current.attempt:
            return
        self._settled(step_id)
        await self._execute(self._machine.on_step_failed(step_id, outcome.attempt, outcome.failure))

    async def _fail_current(self, step_id: str, attempt: int, error: StepError) -> None:
        """Fail ``attempt`` if it is still the step's current one and nothing succeeded
        meanwhile (a failure no worker reported: dead letter, refusal)."""
        async with self._lock:
            current = self._step(step_id)
            if self.finished or current is None or not is_current(current, attempt):
                return
            done = await self._committed_success(step_id)
            if done is not None:
                await self._apply(current, done)
                return
            await self._fail_step(step_id, attempt, error)

    async def _fail_step(self, step_id: str, attempt: int, error: StepError) -> None:
        """Fail an attempt the coordinator saw fail (no worker recorded or reported it)."""
        self._settled(step_id)
        await self._execute(self._machine.on_step_failed(step_id, attempt, error, observed=True))

    async def _committed_success(self, step_id: str) -> StepResult | None:
        return await self._effects.io(
            "reading a step result", committed_success, self._deps.store, self.run_id, step_id
        )

    def _settled(self, step_id: str) -> None:
        """The step's current attempt ended: no timeout, no refusal to expect for it."""
        self._timers.disarm(step_id)
        self._effects.forget_queued(step_id)

    async def _execute(self, commands: list[Command], *, save_now: bool = True) -> None:
        """Carry out one transition's commands in order, then save the snapshot.

        Args:
            commands: The transition's commands.
            save_now: False when the transition only marked a step running: ``run.json``
                is then written within :data:`SNAPSHOT_DELAY_S` (by the step's end, for a
                short step), which spares a store write per step. A restart rebuilds runs
                from committed results and attempts, never from this snapshot.
        """
        self._snapshot = None  # the machine has moved (or not: reading it again is cheap)
        if not commands:
            return
        self._unpublishable = []
        for call in reactions(commands, self):
            await call()
        if not self.finished:
            if save_now or self._unwritten:
                await self._save()
            else:
                self._timers.snapshot_soon(SNAPSHOT_DELAY_S, self._save_due)
        failures, self._unpublishable = self._unpublishable, []
        for dispatch, error in failures:
            if not self.finished:
                await self._fail_step(dispatch.step_id, dispatch.attempt, error)

    # --- commands (agentic.recording.reactions.Transport) --------------------------------

    async def record_failure(self, command: RecordFailure) -> None:
        await self._effects.record_failure(command)

    async def commit_failure(self, command: CommitFailure) -> None:
        await self._effects.commit_failure(command)

    async def ready(self, announce: Emit, command: Dispatch) -> None:
        if (command.step_id, command.attempt) in self._held:
            self._spec_of(command)  # already with a worker (see resume): not published again
            return
        failure = await self._effects.ready(announce, self._spec_of(command))
        if failure is not None:
            self._unpublishable.append((command, failure))

    async def emit(self, command: Emit) -> None:
        if not command.from_worker:
            await self._effects.publish(command)

    async def dispatch(self, command: Dispatch) -> None:
        if (command.step_id, command.attempt) in self._held:
            self._spec_of(command)
            return
        failure = await self._effects.dispatch(self._spec_of(command))
        if failure is not None:
            self._unpublishable.append((command, failure))

    async def terminate(self, command: Terminate) -> None:
        self._timers.disarm(command.step_id)
        await self._effects.send_kill(command.step_id, command.attempt)

    async def schedule_retry(self, command: ScheduleRetry) -> None:
        step_id = command.step_id
        self._timers.schedule_retry(step_id, command.delay_s, lambda: self.on_retry_due(step_id))

    async def finish(self, command: FinishRun) -> None:
        if self.record.finished_at is not None:
            return
        self.close()
        await self._save(
            status=command.status,
            output=command.output,
            error=command.error,
            finished_at=utcnow(),
        )
        log.info("run %s %s", self.run_id, command.status)
        self._deps.finished(self.run_id)

    # --- records ----------------------------------------------------------------------

    def _spec_of(self, command: Dispatch) -> StepSpec:
        """The spec of the attempt ``command`` dispatches (written with the snapshot)."""
        self._timeouts_s[command.step_id] = command.timeout_s
        base = self._factory.spec(command.step_id)
        spec = dispatched_spec(base, command, self._deps.settings)
        self._unwritten.append(spec)
        return spec

    async def _save_due(self) -> None:
        async with self._lock:
            if self._timers.snapshot_due() and not self.finished:
                await self._save()

    async def _save(self, **changes: object) -> None:
        self._timers.snapshot_done()
        self.record = self.record.model_copy(
            update={**changes, "steps": self._steps(), "updated_at": utcnow()}
        )
        specs, self._unwritten = self._unwritten, []
        await self._effects.write_run(self.record, specs)

    def _ignored(self, event: RunEvent, why: str) -> None:
        log.warning(
            "run %s: ignoring %s of step %s attempt %s: %s",
            self.run_id, event.type, event.step_id, event.attempt, why,
        )  # fmt: skip

    def _step(self, step_id: str) -> StepState | None:
        return next((s for s in self._steps() if s.step_id == step_id), None)

    def _steps(self) -> list[StepState]:
        """The machine's snapshot, made once per transition (it builds a model per step)."""
        if self._snapshot is None:
            self._snapshot = self._machine.snapshot()
        return self._snapshot

    @property
    def _machine(self) -> RunState:
        assert self._state is not None, "the run has not started"
        return self._state
