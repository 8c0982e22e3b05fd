"""One run on the bus: the coordinator state machine fed with what happens to the run.

A :class:`RunDriver` owns one run's :class:`~agentic.coordinator.RunState` and feeds it
workers' events, timers, dead letters, refusals and cancels, one at a time under the run's
lock; its :class:`~services.coordinator.outbox.RunOutbox` carries out what the machine
commands (through :func:`agentic.recording.reactions.reactions`, as every driver does).
Step outcomes are always read from the store: events only say where to look.

``run.json`` holds the step snapshot after every transition, but for one that only marks a
step running: that snapshot is written within :data:`SNAPSHOT_DELAY_S` (usually by the
step's end); a restart rebuilds runs from committed results and attempt files, never from
it. A step's timeout counts from its ``step_started`` (a step may wait in the queue for a
worker as long as it takes), plus :data:`TIMEOUT_MARGIN_S`: the worker enforces
``timeout_s`` itself, the coordinator's timer is the backstop for one that cannot.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from agentic.contracts import (
    RunEvent,
    RunRecord,
    StepError,
    StepResult,
    StepSpec,
    StepState,
)
from agentic.coordinator import (
    Command,
    Dispatch,
    Emit,
    RunState,
)
from agentic.failures import DEAD_LETTERED, REFUSED
from agentic.logs import log_context
from agentic.materialize import SpecFactory
from agentic.recording.outcome import attempt_outcome, committed_success
from agentic.recording.reactions import reactions
from services.coordinator.dead_letters import dead_letter_message
from services.coordinator.effects import Deps
from services.coordinator.outbox import RunOutbox
from services.coordinator.timers import RunTimers
from services.coordinator.transitions import SeededLazily, is_current

log = logging.getLogger(__name__)

TIMEOUT_MARGIN_S = 5.0
# How long run.json may lag behind a step that started, and behind any transition of a run
# of more than COALESCE_FROM_STEPS steps (see RunDriver._execute).
SNAPSHOT_DELAY_S = 1.0
COALESCE_FROM_STEPS = 20


class RunDriver:
    """Drives one run. Every public coroutine takes the run's lock: one transition at a time.

    Args:
        record: The run as stored, with its resolved workflow.
        specs: Builds each step's attempt-1 spec when it is dispatched (the workflow holds
            each provider once; specs are not kept).
        deps: The coordinator's settings, store, effects and task spawner.
    """

    def __init__(self, record: RunRecord, specs: SpecFactory, deps: Deps) -> None:
        self._deps = deps
        self._effects = deps.effects(record.run_id, deps)
        self._timers = RunTimers(deps.spawn, deps.leading)
        self._out = RunOutbox(
            record, specs, deps, self._effects, self._timers,
            steps=self._steps, retry_due=self.on_retry_due,
        )  # fmt: skip
        self._lock = asyncio.Lock()
        self._state: RunState | None = None
        self._snapshot: list[StepState] | None = None
        # run.json is O(steps) bytes: a long run writes it at most once per
        # SNAPSHOT_DELAY_S, so that a transition costs the same whatever the run's length.
        self._coalesce = (
            len(record.workflow.task_sequence) > COALESCE_FROM_STEPS if record.workflow else False
        )

    @property
    def record(self) -> RunRecord:
        """The run as last written to ``run.json``."""
        return self._out.record

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
                keep_outputs=False,
            )
            self._state = state
            self._deps.metrics.run_started(self.record)
            if self.record.status != "running":
                await self._out.save(status="running")
            steps = list(self.record.workflow.task_sequence)
            await self._effects.publish(
                Emit("planned", data={"workflow": self.record.workflow.name, "steps": steps})
            )
            await self._execute(commands)

    async def resume(
        self,
        committed: dict[str, StepResult],
        attempts_seen: dict[str, int],
        provider_failures: dict[str, int] | None = None,
    ) -> None:
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
                provider_failures=provider_failures,
                rng=SeededLazily(self.run_id).as_random(),
                keep_outputs=False,
            )
            self._state = state
            self._out.held = await self._held_by_workers(commands)
            try:
                await self._execute(commands)
            finally:
                held, self._out.held = self._out.held, set()
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
                await self._on_started(current, event.attempt, event.ts)
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
        with log_context(run_id=self.run_id, step_id=step_id, attempt=attempt):
            async with self._lock:
                current = self._step(step_id)
                if self.finished or current is None or not is_current(current, attempt):
                    return
                done = await self._committed_success(step_id)
                if done is not None:  # committed just in time: the store wins
                    cost = done.usage.cost_usd
                    succeeded = self._machine.on_step_succeeded(
                        step_id, attempt, done.output, cost_usd=cost
                    )
                    await self._execute(succeeded)
                    return
                await self._execute(self._machine.on_timeout(step_id, attempt))

    async def on_retry_due(self, step_id: str) -> None:
        """A retry's backoff has passed."""
        timers = self._timers
        if not timers.while_leading(timers.retries, step_id, lambda: self.on_retry_due(step_id)):
            return
        with log_context(run_id=self.run_id, step_id=step_id):
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

    async def _on_started(
        self, current: StepState, attempt: int, at: datetime | None = None
    ) -> None:
        if not is_current(current, attempt):
            return
        if at is not None:  # unknown for an attempt a restored run finds started
            self._out.started(current.step_id, attempt, at)
        # Every delivery restarts the clock: a redelivered attempt runs again from scratch.
        step_id = current.step_id
        timeout = self._out.timeouts_s.get(step_id, self._deps.settings.default_step_timeout_s)
        self._timers.arm_timeout(
            step_id, timeout + TIMEOUT_MARGIN_S, lambda: self.on_timeout(step_id, attempt)
        )
        await self._execute(self._machine.on_step_started(step_id, attempt), save_now=False)

    async def _apply(self, current: StepState, outcome: StepResult) -> None:
        self._deps.metrics.outcome(self.record, outcome)
        step_id = current.step_id
        if outcome.status == "succeeded":
            # Whichever attempt committed it, the step is done: the store is the truth.
            self._settled(step_id)
            cost = outcome.usage.cost_usd
            await self._execute(
                self._machine.on_step_succeeded(
                    step_id, current.attempt, outcome.output, cost_usd=cost
                )
            )
            return
        if outcome.attempt != current.attempt:
            return
        self._settled(step_id)
        await self._execute(
            self._machine.on_step_failed(
                step_id, outcome.attempt, outcome.failure, cost_usd=outcome.usage.cost_usd
            )
        )

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
        self._deps.metrics.transition(self.record, commands)
        self._out.unpublishable = []
        for call in reactions(commands, self._out):
            await call()
        if not self.finished:
            if self._out.has_unwritten_specs:
                await self._out.write_specs()
            if save_now and not self._coalesce:
                await self._out.save()
            else:
                self._timers.snapshot_soon(SNAPSHOT_DELAY_S, self._save_due)
        failures, self._out.unpublishable = self._out.unpublishable, []
        for dispatch, error in failures:
            if not self.finished:
                await self._fail_step(dispatch.step_id, dispatch.attempt, error)

    # --- records ----------------------------------------------------------------------

    async def _save_due(self) -> None:
        async with self._lock:
            if self._timers.snapshot_due() and not self.finished:
                await self._out.save()

    def _ignored(self, event: RunEvent, why: str) -> None:
        log.warning(
            "run %s: ignoring %s of step %s attempt %s: %s",
            self.run_id, event.type, event.step_id, event.attempt, why,
        )  # fmt: skip

    def _step(self, step_id: str) -> StepState | None:
        return self._machine.step_state(step_id)

    def _steps(self) -> list[StepState]:
        """The machine's snapshot, made once per transition (it builds a model per step)."""
        if self._snapshot is None:
            self._snapshot = self._machine.snapshot()
        return self._snapshot

    @property
    def _machine(self) -> RunState:
        assert self._state is not None, "the run has not started"
        return self._state
