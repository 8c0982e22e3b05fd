"""The local run driver: one run, driven by the coordinator state machine and a launcher.

:class:`LocalDriver` is the loop shared by every backend that starts one process or Job per
step (``subprocess`` now, ``kubernetes`` later). It owns time and I/O, the state machine owns
decisions:

* it writes ``run.json`` (``running``, then step snapshots, then the final status), and a
  ``spec.json`` for every dispatched attempt (prior outputs merged, attempt set);
* it launches dispatched attempts, at most ``max_parallel`` at once (the rest wait in FIFO
  order), and watches them: a launcher with a ``wait(handles, timeout)`` method (see
  :class:`WaitingLauncher`) wakes the loop as soon as a step exits, others are polled;
* when a step exits it reads the *committed* result from the store; a step that exited
  without recording anything is a crash (exit code and stderr tail), recorded as a failed
  attempt; a step past its ``timeout_s`` is terminated and reported as a timeout;
* it carries out retries after their backoff, and cancellation (:meth:`LocalDriver.cancel`
  from any thread, Ctrl-C in the calling thread, or ``agentic cancel`` from anywhere
  through the store's ``cancel.json``, see :mod:`agentic.recording.cancel`) terminates
  every running step.

Every run event goes to ``on_event`` in order, with increasing ``seq``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from agentic import failures
from agentic.backends.base import EventCallback, StepHealth, StepLauncher
from agentic.budget import LOCAL, LocalLease, waiting_note
from agentic.contracts import (
    Limits,
    RunRecord,
    StepError,
    StepResult,
    StepSpec,
    Usage,
    utcnow,
)
from agentic.contracts.events import StepProgressData
from agentic.coordinator import (
    Command,
    CommitFailure,
    Dispatch,
    Emit,
    RecordFailure,
    RunState,
    ScheduleRetry,
    Terminate,
)
from agentic.errors import ConfigError
from agentic.recording.attempts import commit_failure, record_failure
from agentic.recording.cancel import (
    CANCELLED_BY_INTERRUPT,
    CancelRequests,
    cancel_scope,
)
from agentic.recording.journal import JournalTransport, RunJournal, start_run
from agentic.recording.outcome import attempt_outcome, committed_success
from agentic.recording.reactions import reactions
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.store import RunStore


@runtime_checkable
class WaitingLauncher(Protocol):
    """A launcher that can block until one of its steps may have exited.

    Optional: the driver uses it when present (a process exit then wakes the loop at once)
    and falls back to polling :meth:`StepLauncher.check` otherwise.
    """

    def wait(self, handles: Sequence[Any], timeout: float) -> None:
        """Return when any of ``handles`` may have exited, or after ``timeout`` seconds."""
        ...


@dataclass
class _Attempt:
    """One dispatched attempt: queued until a slot frees up, then running."""

    spec: StepSpec
    timeout_s: float
    queued_at: datetime = field(default_factory=utcnow)
    started_at: datetime | None = None
    handle: Any = None
    deadline: float = float("inf")
    lease: LocalLease | None = None  # its provider's budget, once admitted
    waited: bool = False  # "waiting for <provider> budget" was said

    @property
    def key(self) -> tuple[str, int]:
        return self.spec.step_id, self.spec.attempt


class LocalDriver(JournalTransport):
    """Runs one run in the calling thread; build one per run.

    Args:
        launcher: Starts, checks and terminates step attempts.
        store: The run store; ``run.json`` must already exist (``create_run``).
        settings: Retry, timeout and prior-output settings.
        on_event: Receives every run event, in order.
        max_parallel: Most attempts running at once; None for no limit.
        poll_interval_s: Longest sleep between two checks of the running steps (also bounds
            how long a :meth:`cancel` takes to be noticed).
        clock: Monotonic seconds; tests may inject one.
    """

    def __init__(
        self,
        launcher: StepLauncher[Any],
        store: RunStore,
        settings: Settings,
        on_event: EventCallback,
        *,
        max_parallel: int | None = None,
        poll_interval_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_parallel is not None and max_parallel < 1:
            raise ConfigError(f"max_parallel must be at least 1, got {max_parallel}")
        self._launcher = launcher
        self._store = store
        self._settings = settings
        self._on_event = on_event
        self._max_parallel = max_parallel
        self._poll_s = poll_interval_s
        self._clock = clock
        self._cancel = threading.Event()
        self._cancel_reason = "cancelled by request"
        self._queue: deque[_Attempt] = deque()
        self._running: dict[str, _Attempt] = {}
        self._retries: dict[str, float] = {}
        self._specs: dict[str, StepSpec] = {}
        # Attempts that ended before the machine heard of it (their timing, for the record).
        self._ended: dict[tuple[str, int], _Attempt] = {}
        self._state: RunState | None = None
        self._journal: RunJournal | None = None
        self._requests: CancelRequests | None = None

    # --- public API ---------------------------------------------------------------------

    def cancel(self, reason: str = "cancelled by request") -> None:
        """Cancel the run: running steps are terminated and the run ends ``cancelled``.

        Safe to call from any thread, before or during :meth:`run`.
        """
        self._cancel_reason = reason
        self._cancel.set()

    def run(
        self, record: RunRecord, *, reused: Mapping[str, StepResult] | None = None
    ) -> RunRecord:
        """Run ``record`` to its end and return the final record (as written to ``run.json``).

        Args:
            record: The run, with its resolved ``workflow`` and ``inputs``.
            reused: Succeeded results of an earlier run to take over by step id (replay):
                they are committed to this run, marked ``reused_from``, and never executed.

        Raises:
            ConfigError: the record has no workflow, or the workflow cannot be materialized
                (nothing is launched then).
        """
        started = start_run(record, self._store, self._settings, reused=reused or {})
        self._specs = started.specs
        state = self._state = started.state
        self._journal = RunJournal(self._store, record, state, self._on_event)
        self._journal.start()
        self._requests = CancelRequests(self._store, cancel_scope(record), clock=self._clock)
        try:
            self._execute(started.commands)
            while not state.finished:
                self._tick()
        except KeyboardInterrupt:
            self._execute(state.on_cancel(CANCELLED_BY_INTERRUPT))
        finally:
            self._terminate_all()
        return self.journal.record

    # --- the loop -----------------------------------------------------------------------

    def _tick(self) -> None:
        self._launch_queued()
        self._wait()
        for attempt in self._still_running():
            health = self._launcher.check(attempt.handle)
            if health.state == "exited":
                self._on_exit(attempt, health)
        now = self._clock()
        for attempt in self._still_running():
            if now >= attempt.deadline:
                self._on_deadline(attempt)
        for step_id, due in list(self._retries.items()):
            if now >= due:
                del self._retries[step_id]
                self._execute(self._machine.on_retry_due(step_id))
        reason = self._requests.due() if self._requests is not None else None
        if reason is not None:  # `agentic cancel` from another process
            self.cancel(reason)
        if self._cancel.is_set():
            self._execute(self._machine.on_cancel(self._cancel_reason))

    def _still_running(self) -> Iterator[_Attempt]:
        """The running attempts, skipping any that an earlier handler of this tick ended."""
        for attempt in list(self._running.values()):
            if self._running.get(attempt.spec.step_id) is attempt:
                yield attempt

    def _wait(self) -> None:
        """Sleep until something may have happened, never longer than the poll interval."""
        wakeups = [a.deadline for a in self._running.values()] + list(self._retries.values())
        timeout = min([self._poll_s, *(w - self._clock() for w in wakeups)])
        timeout = max(0.0, timeout)
        handles = [a.handle for a in self._running.values()]
        if handles and isinstance(self._launcher, WaitingLauncher):
            self._launcher.wait(handles, timeout)
        else:
            self._cancel.wait(timeout)

    def _launch_queued(self) -> None:
        """Launch queued attempts in order, while slots are free; one whose provider's
        budget is spent waits in its place (its timeout has not started)."""
        waiting: list[_Attempt] = []
        while self._queue and (
            self._max_parallel is None or len(self._running) < self._max_parallel
        ):
            attempt = self._queue.popleft()
            if not self._admitted(attempt):
                waiting.append(attempt)
                continue
            try:
                attempt.handle = self._launcher.launch(attempt.spec)
            except Exception as exc:  # any launch failure is a failed attempt, never a crash
                error = StepError(
                    type=failures.LAUNCH_FAILED,
                    message=f"could not start the step: {type(exc).__name__}: {exc}",
                    retryable=True,
                )
                self._release(attempt, None)
                self._ended[attempt.key] = attempt
                self._execute(self._machine.on_step_failed(*attempt.key, error, observed=True))
                continue
            attempt.started_at = utcnow()
            attempt.deadline = self._clock() + attempt.timeout_s
            self._running[attempt.spec.step_id] = attempt
            self._execute(self._machine.on_step_started(*attempt.key))
        self._queue.extendleft(reversed(waiting))

    def _admitted(self, attempt: _Attempt) -> bool:
        """Whether the attempt's provider budget lets it start now (see agentic.budget)."""
        provider = attempt.spec.agent_provider
        if attempt.lease is not None or not provider.get("limits"):
            return True
        provider_id = str(provider.get("id"))
        attempt.lease = LOCAL.try_acquire(provider_id, Limits.model_validate(provider["limits"]))
        if attempt.lease is None and not attempt.waited:
            attempt.waited = True
            data = StepProgressData(message=waiting_note(provider_id)).as_data()
            self.journal.emit(Emit("step_progress", *attempt.key, data))
        return attempt.lease is not None

    def _release(self, attempt: _Attempt, usage: Usage | None) -> None:
        if attempt.lease is not None:
            LOCAL.release(attempt.lease, usage)
            attempt.lease = None

    def _on_exit(self, attempt: _Attempt, health: StepHealth) -> None:
        del self._running[attempt.spec.step_id]
        self._ended[attempt.key] = attempt
        spec = attempt.spec
        result = attempt_outcome(self._store, spec.run_id, spec.step_id, spec.attempt)
        self._release(attempt, result.usage if result is not None else None)
        if result is None:  # it exited without recording anything: a crash
            crash = health.crash_error()
            self._execute(self._machine.on_step_failed(*attempt.key, crash, observed=True))
            return
        self._after_result(attempt, result)

    def _on_deadline(self, attempt: _Attempt) -> None:
        del self._running[attempt.spec.step_id]
        self._ended[attempt.key] = attempt
        self._launcher.terminate(attempt.handle)
        self._release(attempt, None)
        spec = attempt.spec
        # The step may have committed its result just before it was killed: the store wins.
        done = committed_success(self._store, spec.run_id, spec.step_id)
        if done is not None:
            self._after_result(attempt, done)
            return
        self._execute(self._machine.on_timeout(*attempt.key))

    def _after_result(self, attempt: _Attempt, result: StepResult) -> None:
        self.journal.attempt_ended(result)
        cost = result.usage.cost_usd
        if result.status == "succeeded":
            self._execute(
                self._machine.on_step_succeeded(*attempt.key, result.output, cost_usd=cost)
            )
            return
        self._execute(self._machine.on_step_failed(*attempt.key, result.failure, cost_usd=cost))

    # --- commands (agentic.recording.reactions.Transport) ----------------------------------

    def _execute(self, commands: list[Command]) -> None:
        """Carry out one transition's commands in order, then save the step snapshot."""
        if not commands:
            return
        for call in reactions(commands, self):
            call()
        if not self._machine.finished:
            self.journal.save()

    def record_failure(self, command: RecordFailure) -> None:
        attempt = self._ended.get((command.step_id, command.attempt))
        recorded = record_failure(
            self._store,
            self.journal.record.run_id,
            command,
            queued_at=attempt.queued_at if attempt else None,
            started_at=attempt.started_at if attempt else None,
        )
        self.journal.attempt_ended(recorded)

    def commit_failure(self, command: CommitFailure) -> None:
        commit_failure(self._store, self.journal.record.run_id, command)

    def dispatch(self, command: Dispatch) -> None:
        self._queue.append(_Attempt(spec=self._write_spec(command), timeout_s=command.timeout_s))

    def schedule_retry(self, command: ScheduleRetry) -> None:
        self._retries[command.step_id] = self._clock() + command.delay_s

    def terminate(self, command: Terminate) -> None:
        key = (command.step_id, command.attempt)
        for queued in list(self._queue):
            if queued.key == key:
                self._queue.remove(queued)
        running = self._running.get(command.step_id)
        if running is not None and running.key == key:
            del self._running[command.step_id]
            self._launcher.terminate(running.handle)
            self._release(running, None)

    def _terminate_all(self) -> None:
        """Leave nothing running, whatever ended the loop."""
        for queued in self._queue:
            self._release(queued, None)
        self._queue.clear()
        while self._running:
            _, attempt = self._running.popitem()
            self._launcher.terminate(attempt.handle)
            self._release(attempt, None)

    @property
    def _machine(self) -> RunState:
        assert self._state is not None, "the driver is not running"
        return self._state
