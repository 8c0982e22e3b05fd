"""One run on the bus: the coordinator state machine's commands, carried out over NATS.

A :class:`RunDriver` owns one run's :class:`~agentic.coordinator.RunState` and turns its
commands into effects:

* ``Dispatch``: make sure the pool's ``workers-<pool>`` consumer exists, publish the
  StepSpec (``Nats-Msg-Id = <run>.<step>.<attempt>``) right behind the ``step_ready`` that
  announces it, and write its ``spec.json`` with the transition's ``run.json``;
* ``Emit``: publish the run event, unless a worker already did (``from_worker``);
* ``Terminate``: send a kill notice on ``agentic.control.terminate.<run_id>``;
* ``ScheduleRetry``: a timer that calls ``on_retry_due``;
* ``FinishRun``: the final ``run.json`` (written before the terminal event is published, so
  a client that sees ``succeeded`` reads a finished run).

Every transition ends with ``run.json`` holding the step snapshot, but for one that only
marks a step running: that snapshot is written within :data:`SNAPSHOT_DELAY_S` (usually
by the step's end). A restart rebuilds runs from committed results and attempt files,
never from the snapshot. Step outcomes are always
read from the store: events only say where to look. A step's timeout is counted from its
``step_started`` (a step may wait in the queue for a worker as long as it takes), plus
:data:`TIMEOUT_MARGIN_S`, because the worker enforces ``timeout_s`` itself and reports it;
the coordinator's timer is the backstop for a worker that cannot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from agentic.backends.journal import dispatched_spec
from agentic.backends.outcome import attempt_outcome, committed_success
from agentic.bus.follow import started_attempts
from agentic.contracts import (
    TERMINAL_EVENTS,
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
    Dispatch,
    Emit,
    FinishRun,
    RunState,
    ScheduleRetry,
    Terminate,
)
from agentic.materialize import SpecFactory
from services.coordinator.dead_letters import DEAD_LETTER_ERROR_TYPE, dead_letter_message
from services.coordinator.effects import Deps, RunEffects
from services.coordinator.transitions import (
    SeededLazily,
    announced,
    is_current,
    published_here,
)
from services.lifecycle import persist

log = logging.getLogger(__name__)

TIMEOUT_MARGIN_S = 5.0
REFUSED_ERROR_TYPE = "StepRefused"
# How soon a timer that fired while the lease was in doubt fires again.
NOT_LEADING_RECHECK_S = 1.0
# How long run.json may lag behind a step that started (see RunDriver._execute).
SNAPSHOT_DELAY_S = 1.0


class RunDriver:
    """Drives one run. Every public coroutine takes the run's lock: one transition at a time.

    Args:
        record: The run as stored, with its resolved workflow.
        specs: Builds each step's attempt-1 spec when it is dispatched (the workflow holds
            each provider once; specs are not kept).
        deps: The coordinator's connections, store and settings.
    """

    def __init__(self, record: RunRecord, specs: SpecFactory, deps: Deps) -> None:
        self.record = record
        self._factory = specs
        self._unwritten: list[StepSpec] = []
        self._deps = deps
        self._effects = RunEffects(record.run_id, deps)
        self._lock = asyncio.Lock()
        self._state: RunState | None = None
        self._timeouts_s: dict[str, float] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._retries: dict[str, asyncio.TimerHandle] = {}
        self._snapshot_due: asyncio.TimerHandle | None = None
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
        deps = self._deps
        started = await persist(
            f"reading the started steps of run {self.run_id}",
            lambda: started_attempts(
                deps.js, self.run_id, max_bytes=deps.settings.max_message_bytes
            ),
            stopping=deps.stopping,
        )
        return {(d.step_id, d.attempt) for d in dispatches if started.get(d.step_id) == d.attempt}

    # --- events -----------------------------------------------------------------------

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
                log.warning(
                    "run %s: ignoring %s of step %s attempt %d: not an attempt dispatched",
                    self.run_id, event.type, event.step_id, event.attempt,
                )  # fmt: skip
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
                log.warning(
                    "run %s: ignoring %s of step %s attempt %d: the store holds no result of "
                    "that attempt", self.run_id, event.type, event.step_id, event.attempt,
                )  # fmt: skip
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
        async with self._lock:
            current = self._step(step_id)
            if self.finished or current is None or not is_current(current, attempt):
                return True
            message = f"a worker refused step {step_id!r} attempt {attempt}: {reason}"
            error = StepError(type=REFUSED_ERROR_TYPE, message=message, retryable=False)
            await self._fail_step(step_id, attempt, error)
        return True

    async def on_timeout(self, step_id: str, attempt: int) -> None:
        """The coordinator's timer of a running attempt ran out."""
        if not self._while_leading(
            self._timers, step_id, lambda: self.on_timeout(step_id, attempt)
        ):
            return
        async with self._lock:
            current = self._step(step_id)
            if self.finished or current is None or not is_current(current, attempt):
                return
            done = await self._effects.io(
                "reading a step result", committed_success, self._deps.store, self.run_id, step_id
            )
            if done is not None:  # committed just in time: the store wins
                await self._execute(self._machine.on_step_succeeded(step_id, attempt, done.output))
                return
            commands = self._machine.on_timeout(step_id, attempt)
            failed = next(c for c in commands if isinstance(c, Emit) and c.type == "step_failed")
            error = StepError.model_validate(failed.data["error"])
            await self._effects.record_failure(step_id, attempt, error)
            await self._execute(commands)
            await self._commit_if_final(step_id, attempt)

    async def on_retry_due(self, step_id: str) -> None:
        """A retry's backoff has passed."""
        if not self._while_leading(self._retries, step_id, lambda: self.on_retry_due(step_id)):
            return
        async with self._lock:
            self._retries.pop(step_id, None)
            if not self.finished:
                await self._execute(self._machine.on_retry_due(step_id))

    async def on_dead_letter(self, spec: StepSpec, deliveries: int) -> str:
        """The attempt ``spec`` exhausted its deliveries: fail the step (and so the run).

        Returns:
            The error message, also the dead letter's reason.
        """
        message = dead_letter_message(spec, deliveries)
        async with self._lock:
            current = self._step(spec.step_id)
            if self.finished or current is None or not is_current(current, spec.attempt):
                return message
            done = await self._effects.io(
                "reading a step result",
                committed_success,
                self._deps.store,
                self.run_id,
                spec.step_id,
            )
            if done is not None:
                await self._apply(current, done)
                return message
            error = StepError(type=DEAD_LETTER_ERROR_TYPE, message=message, retryable=False)
            await self._fail_step(spec.step_id, spec.attempt, error)
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
        for handle in [*self._timers.values(), *self._retries.values()]:
            handle.cancel()
        self._timers.clear()
        self._retries.clear()
        if self._snapshot_due is not None:
            self._snapshot_due.cancel()
            self._snapshot_due = None

    # --- transitions ------------------------------------------------------------------

    async def _on_started(self, current: StepState, attempt: int) -> None:
        if not is_current(current, attempt):
            return
        # Every delivery restarts the clock: a redelivered attempt runs again from scratch.
        self._arm_timeout(current.step_id, attempt)
        await self._execute(self._machine.on_step_started(current.step_id, attempt), save_now=False)

    async def _apply(self, current: StepState, outcome: StepResult) -> None:
        step_id = current.step_id
        self._effects.forget_queued(step_id)
        if outcome.status == "succeeded":
            # Whichever attempt committed it, the step is done: the store is the truth.
            self._disarm(step_id)
            await self._execute(
                self._machine.on_step_succeeded(step_id, current.attempt, outcome.output)
            )
            return
        if outcome.attempt != current.attempt:
            return
        self._disarm(step_id)
        error = outcome.error or StepError(type="StepFailed", message="no error recorded")
        await self._execute(self._machine.on_step_failed(step_id, outcome.attempt, error))
        await self._commit_if_final(step_id, outcome.attempt)

    async def _fail_step(self, step_id: str, attempt: int, error: StepError) -> None:
        """Fail an attempt the coordinator saw fail (no worker reported it)."""
        self._disarm(step_id)
        self._effects.forget_queued(step_id)
        await self._effects.record_failure(step_id, attempt, error)
        commands = self._machine.on_step_failed(step_id, attempt, error)
        # The machine marks step_failed as the worker's word; here nobody else publishes it.
        await self._execute([published_here(c) for c in commands])
        await self._commit_if_final(step_id, attempt)

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
        finish = next((c for c in commands if isinstance(c, FinishRun)), None)
        unpublishable: list[tuple[Command, StepError]] = []
        for command, dispatch in announced(commands):
            failure = await self._carry_out(command, dispatch, finish)
            if failure is not None:
                unpublishable.append((dispatch or command, failure))
        if finish is not None:
            await self._finish(finish)
        elif save_now or self._unwritten:
            await self._save()
        else:
            self._save_soon()
        for failed, error in unpublishable:
            if isinstance(failed, Dispatch) and not self.finished:
                await self._fail_step(failed.step_id, failed.attempt, error)

    async def _carry_out(
        self, command: Command, dispatch: Dispatch | None, finish: FinishRun | None
    ) -> StepError | None:
        """One command (a ``step_ready`` with its dispatch); the error of a step that cannot
        be dispatched."""
        held = dispatch or command
        if isinstance(held, Dispatch) and (held.step_id, held.attempt) in self._held:
            self._spec_of(held)  # already with a worker (see resume): not published again
            return None
        if isinstance(command, Emit) and dispatch is not None:
            return await self._effects.ready(command, self._spec_of(dispatch))
        if isinstance(command, Emit):
            if finish is not None and command.type in TERMINAL_EVENTS:
                await self._finish(finish)  # run.json is final before anyone hears of it
            if not command.from_worker:
                await self._effects.publish(command)
        elif isinstance(command, Dispatch):
            return await self._effects.dispatch(self._spec_of(command))
        elif isinstance(command, Terminate):
            await self._terminate(command)
        elif isinstance(command, ScheduleRetry):
            self._schedule_retry(command)
        return None

    def _spec_of(self, command: Dispatch) -> StepSpec:
        """The spec of the attempt ``command`` dispatches (written with the snapshot)."""
        self._timeouts_s[command.step_id] = command.timeout_s
        base = self._factory.spec(command.step_id)
        spec = dispatched_spec(base, command, self._deps.settings)
        self._unwritten.append(spec)
        return spec

    async def _terminate(self, command: Terminate) -> None:
        self._disarm(command.step_id)
        await self._effects.send_kill(command.step_id, command.attempt)

    def _schedule_retry(self, command: ScheduleRetry) -> None:
        old = self._retries.pop(command.step_id, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._retries[command.step_id] = loop.call_later(
            command.delay_s, lambda: self._deps.spawn(self.on_retry_due(command.step_id))
        )

    def _while_leading(
        self,
        timers: dict[str, asyncio.TimerHandle],
        step_id: str,
        again: Callable[[], Coroutine[Any, Any, None]],
    ) -> bool:
        """True if this coordinator surely still leads; else the timer fires again later.

        A leader cut off from NATS cannot renew its lease; once it may have expired, its
        timers wait instead of writing timeouts or retries to the store, which a standby
        may be driving by then (the first renewal that works stops this one, or confirms
        that it still leads).
        """
        if self._deps.leading():
            return True
        loop = asyncio.get_running_loop()
        timers[step_id] = loop.call_later(NOT_LEADING_RECHECK_S, lambda: self._deps.spawn(again()))
        return False

    def _arm_timeout(self, step_id: str, attempt: int) -> None:
        self._disarm(step_id)
        timeout = self._timeouts_s.get(step_id, self._deps.settings.default_step_timeout_s)
        loop = asyncio.get_running_loop()
        self._timers[step_id] = loop.call_later(
            timeout + TIMEOUT_MARGIN_S,
            lambda: self._deps.spawn(self.on_timeout(step_id, attempt)),
        )

    def _disarm(self, step_id: str) -> None:
        handle = self._timers.pop(step_id, None)
        if handle is not None:
            handle.cancel()

    # --- records ----------------------------------------------------------------------

    def _save_soon(self) -> None:
        if self._snapshot_due is None:
            self._snapshot_due = asyncio.get_running_loop().call_later(
                SNAPSHOT_DELAY_S, lambda: self._deps.spawn(self._save_due())
            )

    async def _save_due(self) -> None:
        async with self._lock:
            if self._snapshot_due is not None and not self.finished:
                await self._save()

    async def _save(self, **changes: object) -> None:
        if self._snapshot_due is not None:
            self._snapshot_due.cancel()
            self._snapshot_due = None
        self.record = self.record.model_copy(
            update={**changes, "steps": self._steps(), "updated_at": utcnow()}
        )
        specs, self._unwritten = self._unwritten, []
        await self._effects.write_run(self.record, specs)

    async def _finish(self, command: FinishRun) -> None:
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

    async def _commit_if_final(self, step_id: str, attempt: int) -> None:
        """Commit the last failed attempt of a step that will not be retried."""
        current = self._step(step_id)
        if current is not None and current.status == "failed":
            await self._effects.commit_failure(step_id, attempt)

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
