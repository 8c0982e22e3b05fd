"""Provider budgets (``limits:`` on an agent provider), shared by every step that uses it.

A budget admits a step *before it starts* and is charged when it ends:

* ``concurrency: N``: a step holds one of ``N`` slots from its start to its end (an agent
  makes one model request at a time, so ``N`` steps make at most ``N`` requests at once);
* ``requests_per_minute: R``: a step starts only while the calendar minute's requests are
  below ``R``; starting reserves one request, and the step's other requests are charged
  when it ends (``Usage.requests``);
* ``tokens_per_minute: T``: a step starts only while the minute's tokens are below ``T``;
  its tokens are charged when it ends.

So a running step is never throttled mid-call: the limits pace step starts, and a
minute's spending can pass a limit by what the steps admitted in it spent. What waits for
budget is a step that has not started: the wait does not count against its ``timeout_s``,
and it is shown as ``waiting for <provider> budget``.

Two implementations share :class:`Admission` (the rule): :class:`LocalBudgets` for the
steps driven by one process (``inprocess``, ``subprocess``, ``kubernetes``: the driver
admits each attempt before it launches it), and the JetStream KV bucket of a NATS
installation (:mod:`agentic.bus.budget`), where the slots are leases that a crashed holder
stops renewing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agentic.contracts import Limits, Usage

WINDOW_S = 60
"""Rate limits count per calendar minute (the window a model vendor's RPM and TPM use)."""
WAIT_POLL_S = 0.5
"""How often a waiting step asks again."""


def window(now: float) -> int:
    """The minute ``now`` (epoch seconds) falls in."""
    return int(now // WINDOW_S)


def waiting_note(provider_id: str) -> str:
    """What a step waiting for its provider's budget says (a ``step_progress`` text)."""
    return f"waiting for {provider_id} budget"


@dataclass(frozen=True)
class Admission:
    """The rule: may one more step start, given what the budget has in use and spent?"""

    limits: Limits

    def admits(self, *, held: int, requests: int, tokens: int) -> bool:
        """``held`` slots are taken; the current minute saw ``requests`` and ``tokens``."""
        limits = self.limits
        if limits.concurrency is not None and held >= limits.concurrency:
            return False
        if limits.requests_per_minute is not None and requests >= limits.requests_per_minute:
            return False
        return limits.tokens_per_minute is None or tokens < limits.tokens_per_minute


def charges(usage: Usage | None) -> tuple[int, int]:
    """What an ended step adds to its minute: (requests beyond the one reserved, tokens)."""
    if usage is None:
        return 0, 0
    requests = max(0, (usage.requests or 0) - 1)
    return requests, usage.total_tokens


@dataclass
class _Account:
    held: int = 0
    minutes: dict[int, list[int]] = field(default_factory=dict)  # minute -> [requests, tokens]

    def spent(self, minute: int) -> list[int]:
        for old in [m for m in self.minutes if m < minute - 1]:
            del self.minutes[old]
        return self.minutes.setdefault(minute, [0, 0])


@dataclass(frozen=True)
class LocalLease:
    """A step admitted by a :class:`LocalBudgets` (release it with its usage)."""

    provider_id: str
    limits: Limits


class LocalBudgets:
    """The budgets of the steps this process drives, by provider id (thread-safe).

    Args:
        clock: Epoch seconds; tests may inject one.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[str, _Account] = {}

    def try_acquire(self, provider_id: str, limits: Limits) -> LocalLease | None:
        """Admit one step now (a slot taken, a request reserved), or None: not now."""
        with self._lock:
            account = self._accounts.setdefault(provider_id, _Account())
            spent = account.spent(window(self._clock()))
            if not Admission(limits).admits(held=account.held, requests=spent[0], tokens=spent[1]):
                return None
            account.held += 1
            spent[0] += 1
            return LocalLease(provider_id, limits)

    def acquire(
        self,
        provider_id: str,
        limits: Limits,
        *,
        waiting: Callable[[], None] = lambda: None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> LocalLease:
        """Wait until a step may start; ``waiting`` is called once if it has to wait."""
        told = False
        while (lease := self.try_acquire(provider_id, limits)) is None:
            if not told:
                waiting()
                told = True
            sleep(WAIT_POLL_S)
        return lease

    def release(self, lease: LocalLease, usage: Usage | None) -> None:
        """The step ended: free its slot, charge its requests and tokens to this minute."""
        requests, tokens = charges(usage)
        with self._lock:
            account = self._accounts[lease.provider_id]
            account.held = max(0, account.held - 1)
            spent = account.spent(window(self._clock()))
            spent[0] += requests
            spent[1] += tokens


LOCAL = LocalBudgets()
"""The budgets of this process: every run it drives shares them."""
