"""A step launcher whose attempts are threads of this process: for tests and tools.

:class:`ThreadLauncher` is what the ``subprocess`` launcher is without the process: the
local driver (:class:`~agentic.backends.local.driver.LocalDriver`) launches, checks and terminates
attempts the same way, and each attempt records its own result in the store, so a test can
drive the real driver, store and state machine without starting an interpreter. It ships
with the package, as dramatiq ships its stub broker::

    backend = LauncherBackend("threads", lambda store, settings: ThreadLauncher(store))

What it cannot do: kill a thread. :meth:`ThreadLauncher.terminate` sets the attempt's stop
event and waits for it; a step body that never looks at the event runs to its end. Use the
``subprocess`` backend (or NATS workers) for real isolation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agentic.backends.base import StepHealth
from agentic.contracts import StepSpec

if TYPE_CHECKING:
    from agentic.store import RunStore

StepBody = Callable[[StepSpec, threading.Event, "RunStore"], tuple[int, str]]
"""Runs one attempt: ``(spec, stop event, store) -> (exit code, stderr tail)``. The body
records its own result in the store, as a step process does."""

JOIN_TIMEOUT_S = 5.0


def run_step(spec: StepSpec, stop: threading.Event, store: RunStore) -> tuple[int, str]:
    """The real step: :func:`agentic.runtime.execute_step`, recorded like ``execute-step``."""
    from agentic.recording.attempts import record_attempt
    from agentic.runtime import execute_step

    record_attempt(store, execute_step(spec, store=store))
    return 0, ""


@dataclass
class ThreadStep:
    """One attempt running in a thread."""

    spec: StepSpec
    stop: threading.Event
    thread: threading.Thread | None = None
    outcome: list[tuple[int, str]] = field(default_factory=list)


class ThreadLauncher:
    """Runs each attempt in a daemon thread (see the module docstring).

    Args:
        store: The run store the attempts record in.
        body: Runs one attempt (default: the real step, :func:`run_step`).

    Attributes:
        launched: ``(step_id, attempt)`` of every attempt started, in order.
        terminated: ``(step_id, attempt)`` of every attempt asked to stop.
        max_running: The most attempts that ran at once.
    """

    def __init__(self, store: RunStore, body: StepBody = run_step) -> None:
        self.store = store
        self.body = body
        self.launched: list[tuple[str, int]] = []
        self.terminated: list[tuple[str, int]] = []
        self.running = 0
        self.max_running = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)

    def launch(self, spec: StepSpec) -> ThreadStep:
        handle = ThreadStep(spec, threading.Event())
        handle.thread = threading.Thread(
            target=self._run, args=(handle,), name=f"step-{spec.step_id}", daemon=True
        )
        with self._lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        self.launched.append((spec.step_id, spec.attempt))
        handle.thread.start()
        return handle

    def check(self, handle: ThreadStep) -> StepHealth:
        if not handle.outcome:
            return StepHealth.running()
        code, stderr = handle.outcome[0]
        return StepHealth.exited(code, stderr)

    def terminate(self, handle: ThreadStep) -> None:
        """Ask the attempt to stop and wait for it (a thread cannot be killed)."""
        self.terminated.append((handle.spec.step_id, handle.spec.attempt))
        handle.stop.set()
        if handle.thread is not None:
            handle.thread.join(JOIN_TIMEOUT_S)

    def wait(self, handles: Sequence[ThreadStep], timeout: float) -> None:
        """Return when an attempt may have ended, or after ``timeout`` seconds."""
        with self._wake:
            if all(not h.outcome for h in handles):
                self._wake.wait(timeout)

    def close(self) -> None:
        """Nothing to release: the threads end with their attempts."""

    def _run(self, handle: ThreadStep) -> None:
        try:
            outcome = self.body(handle.spec, handle.stop, self.store)
        except Exception as exc:  # a body that raises is a crashed step, as a process would be
            outcome = (1, f"{type(exc).__name__}: {exc}")
        with self._wake:
            handle.outcome.append(outcome)
            self.running -= 1
            self._wake.notify_all()
