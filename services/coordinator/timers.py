"""The timers of one run on the coordinator: step timeouts, retries after their backoff, and
the delayed ``run.json`` snapshot.

Each timer calls back a coroutine of the run's driver through ``spawn`` (so the callback
runs as its own task, under the run's lock). A timeout or a retry that fires while this
coordinator's lease is in doubt fires again :data:`NOT_LEADING_RECHECK_S` later instead
(see :meth:`RunTimers.while_leading`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

# How soon a timer that fired while the lease was in doubt fires again.
NOT_LEADING_RECHECK_S = 1.0

Spawn = Callable[[Coroutine[Any, Any, Any]], None]


class RunTimers:
    """The pending timers of one run.

    Args:
        spawn: Runs a coroutine as a task of the service.
        leading: Whether this coordinator surely still holds the leader's lease.
    """

    def __init__(self, spawn: Spawn, leading: Callable[[], bool]) -> None:
        self._spawn = spawn
        self._leading = leading
        self.timeouts: dict[str, asyncio.TimerHandle] = {}
        self.retries: dict[str, asyncio.TimerHandle] = {}
        self._snapshot: asyncio.TimerHandle | None = None

    def arm_timeout(
        self, step_id: str, after_s: float, fire: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """Call ``fire`` in ``after_s`` seconds unless :meth:`disarm` comes first."""
        self.disarm(step_id)
        self.timeouts[step_id] = self._later(after_s, fire)

    def disarm(self, step_id: str) -> None:
        """Forget the step's timeout."""
        handle = self.timeouts.pop(step_id, None)
        if handle is not None:
            handle.cancel()

    def schedule_retry(
        self, step_id: str, after_s: float, fire: Callable[[], Coroutine[Any, Any, None]]
    ) -> None:
        """Call ``fire`` once the retry's backoff has passed (replacing an earlier one)."""
        old = self.retries.pop(step_id, None)
        if old is not None:
            old.cancel()
        self.retries[step_id] = self._later(after_s, fire)

    def retry_done(self, step_id: str) -> None:
        """The step's retry has fired."""
        self.retries.pop(step_id, None)

    def while_leading(
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
        if self._leading():
            return True
        timers[step_id] = self._later(NOT_LEADING_RECHECK_S, again)
        return False

    def snapshot_soon(self, after_s: float, save: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Call ``save`` in ``after_s`` seconds, unless one is due already."""
        if self._snapshot is None:
            self._snapshot = self._later(after_s, save)

    def snapshot_due(self) -> bool:
        """Whether a delayed snapshot is pending."""
        return self._snapshot is not None

    def snapshot_done(self) -> None:
        """The snapshot was written (now or by the delayed call)."""
        if self._snapshot is not None:
            self._snapshot.cancel()
            self._snapshot = None

    def close(self) -> None:
        """Stop every timer."""
        for handle in [*self.timeouts.values(), *self.retries.values()]:
            handle.cancel()
        self.timeouts.clear()
        self.retries.clear()
        self.snapshot_done()

    def _later(
        self, after_s: float, fire: Callable[[], Coroutine[Any, Any, None]]
    ) -> asyncio.TimerHandle:
        loop = asyncio.get_running_loop()
        return loop.call_later(after_s, lambda: self._spawn(fire()))
