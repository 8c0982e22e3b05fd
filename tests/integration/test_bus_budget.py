"""Provider budgets shared by workers (agentic.bus.budget) against a real nats-server: two
``BusBudgets`` of two workers share one bucket, as the workers of an installation do."""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext

from agentic.bus.budget import BusBudgets, provision_budgets
from agentic.contracts import Limits, Usage
from agentic.settings import Settings

pytestmark = [pytest.mark.nats, pytest.mark.procs]


class Clock:
    def __init__(self, now: float = 6_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def workers(
    js: JetStreamContext, clock: Clock, *, lease_s: float = 30
) -> tuple[BusBudgets, BusBudgets]:
    kv = await provision_budgets(js, Settings(step_ack_wait_s=30))
    return (
        BusBudgets(kv, "worker-a", lease_s=lease_s, clock=clock),
        BusBudgets(kv, "worker-b", lease_s=lease_s, clock=clock),
    )


async def test_two_workers_share_the_slots_of_a_provider(js: JetStreamContext) -> None:
    a, b = await workers(js, Clock())
    limits = Limits(concurrency=2)
    first = await a.try_acquire("shared-slots", limits)
    second = await b.try_acquire("shared-slots", limits)
    assert first is not None and second is not None and first.slot != second.slot

    assert await a.try_acquire("shared-slots", limits) is None
    assert await b.try_acquire("shared-slots", limits) is None
    await a.keep(first)  # a beat keeps it taken
    assert await b.try_acquire("shared-slots", limits) is None

    freed = first.slot
    await a.release(first, None)
    third = await b.try_acquire("shared-slots", limits)
    assert third is not None and third.slot == freed


async def test_a_slot_whose_holder_stopped_beating_is_taken_over_after_its_lease(
    js: JetStreamContext,
) -> None:
    clock = Clock()
    a, b = await workers(js, clock, lease_s=10)
    limits = Limits(concurrency=1)
    crashed = await a.try_acquire("crashy", limits)
    assert crashed is not None
    clock.now += 9
    assert await b.try_acquire("crashy", limits) is None  # still leased
    clock.now += 2
    taken = await b.try_acquire("crashy", limits)
    assert taken is not None and taken.slot == crashed.slot
    # The old holder comes back: giving the slot back no longer frees someone else's slot.
    await a.release(crashed, None)
    assert await a.try_acquire("crashy", limits) is None


async def test_requests_per_minute_count_every_workers_starts_and_charges(
    js: JetStreamContext,
) -> None:
    clock = Clock()
    a, b = await workers(js, clock)
    limits = Limits(requests_per_minute=4)
    lease = await a.try_acquire("rpm", limits)
    assert lease is not None
    await a.release(lease, Usage(requests=2))  # 2 requests so far this minute
    assert await b.try_acquire("rpm", limits) is not None  # 3
    assert await a.try_acquire("rpm", limits) is not None  # 4
    assert await b.try_acquire("rpm", limits) is None
    clock.now += 60
    assert await b.try_acquire("rpm", limits) is not None


async def test_tokens_per_minute_stop_starts_once_spent(js: JetStreamContext) -> None:
    clock = Clock()
    a, b = await workers(js, clock)
    limits = Limits(tokens_per_minute=100)
    lease = await a.try_acquire("tpm", limits)
    assert lease is not None
    await a.release(lease, Usage(prompt_tokens=90, completion_tokens=20))
    assert await b.try_acquire("tpm", limits) is None
    clock.now += 60
    assert await b.try_acquire("tpm", limits) is not None
