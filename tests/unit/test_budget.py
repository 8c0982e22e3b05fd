"""Provider budgets in one process (agentic.budget): the rule, the minute, the charges."""

from __future__ import annotations

import pytest

from agentic.budget import Admission, LocalBudgets, charges, window
from agentic.contracts import Limits, Usage


class Clock:
    def __init__(self, now: float = 600.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_concurrency_slots_are_held_until_released() -> None:
    budgets = LocalBudgets(Clock())
    limits = Limits(concurrency=2)
    first = budgets.try_acquire("model", limits)
    second = budgets.try_acquire("model", limits)
    assert first is not None and second is not None
    assert budgets.try_acquire("model", limits) is None
    assert budgets.try_acquire("other", limits) is not None  # budgets are per provider

    budgets.release(first, None)
    assert budgets.try_acquire("model", limits) is not None


def test_each_start_reserves_a_request_and_the_rest_are_charged_at_the_end() -> None:
    clock = Clock()
    budgets = LocalBudgets(clock)
    limits = Limits(requests_per_minute=3)
    lease = budgets.try_acquire("model", limits)
    assert lease is not None
    # The step made 2 requests: one was reserved, one more is charged: 2 of 3 used.
    budgets.release(lease, Usage(requests=2))
    assert budgets.try_acquire("model", limits) is not None  # the third
    assert budgets.try_acquire("model", limits) is None
    clock.now += 60  # the next minute starts afresh
    assert budgets.try_acquire("model", limits) is not None


def test_tokens_per_minute_stop_starts_once_the_minute_has_spent_them() -> None:
    clock = Clock()
    budgets = LocalBudgets(clock)
    limits = Limits(tokens_per_minute=100)
    lease = budgets.try_acquire("model", limits)
    assert lease is not None
    budgets.release(lease, Usage(prompt_tokens=80, completion_tokens=25))
    assert budgets.try_acquire("model", limits) is None
    clock.now += 60
    assert budgets.try_acquire("model", limits) is not None


def test_acquire_waits_says_so_once_and_starts_when_a_slot_frees() -> None:
    budgets = LocalBudgets(Clock())
    limits = Limits(concurrency=1)
    holder = budgets.try_acquire("model", limits)
    assert holder is not None
    told: list[str] = []
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            budgets.release(holder, None)

    lease = budgets.acquire("model", limits, waiting=lambda: told.append("waiting"), sleep=sleep)
    assert lease is not None and told == ["waiting"] and len(sleeps) == 3


@pytest.mark.parametrize(
    ("usage", "charged"),
    [
        (None, (0, 0)),
        (Usage(), (0, 0)),
        (Usage(requests=4, prompt_tokens=7, completion_tokens=3), (3, 10)),
    ],
)
def test_an_ended_step_is_charged_beyond_its_reserved_request(
    usage: Usage | None, charged: tuple[int, int]
) -> None:
    assert charges(usage) == charged


def test_the_rule_and_the_minute() -> None:
    rule = Admission(Limits(concurrency=1, requests_per_minute=5, tokens_per_minute=50))
    assert rule.admits(held=0, requests=4, tokens=49)
    assert not rule.admits(held=1, requests=0, tokens=0)
    assert not rule.admits(held=0, requests=5, tokens=0)
    assert not rule.admits(held=0, requests=0, tokens=50)
    assert Admission(Limits()).admits(held=99, requests=99, tokens=99)
    assert window(59.9) == 0 and window(60.0) == 1
