"""Several coordinators: one leads with a lease in JetStream KV, the others wait on standby.

Real nats-server, real coordinator and worker processes; a short lease (2 s) keeps the
take-over quick.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import KeyNotFoundError

from agentic import names
from agentic.bus import EmbeddedNats, connect
from agentic.bus.lease import LEADER_KEY, Lease, holder_of, lease_bucket
from agentic.settings import Settings
from tests.factories import DONE, inline_request, scripted_agent_data
from tests.integration.nats_stack import (
    ServiceProcess,
    Stack,
    run_events,
    sample,
    scrape,
    submit,
    wait_event,
    wait_finished,
)

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.procs]

LEASE_S = "2"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    """A server of the test's own: the lease bucket is created with this test's lease."""
    with EmbeddedNats(store_dir=tmp_path / "js") as nats_server:
        yield nats_server


@pytest.fixture
def stack(server: EmbeddedNats, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(
        server.url, tmp_path, coordinator_lease_s=LEASE_S, step_ack_wait_s="3", metrics_port="0"
    )
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def nc(server: EmbeddedNats) -> AsyncIterator[NATS]:
    client = await connect(Settings(nats_url=server.url), name="lease-tests")
    try:
        yield client
    finally:
        await client.close()


async def leader_standby_and_worker(stack: Stack) -> tuple[ServiceProcess, ServiceProcess]:
    """``coord-a`` leading, ``coord-b`` on standby, and one worker."""
    leader = stack.spawn_coordinator(identity="coord-a")
    await leader.wait_ready("coordinator ready")
    standby = stack.spawn_coordinator(identity="coord-b")
    await standby.wait_ready("standby: coordinator 'coord-a' leads")
    await stack.start_workers(1)
    return leader, standby


async def test_a_standby_coordinator_takes_over_a_run_when_the_leader_is_killed(
    stack: Stack, nc: NATS
) -> None:
    leader, standby = await leader_standby_and_worker(stack)
    js = nc.jetstream()

    steady = scripted_agent_data("steady", [DONE], delay_s=1.0)
    await submit(nc, inline_request("ha-1", ["one", "two", "three"], steady))
    await wait_event(js, "ha-1", "step_started", step_id="two")
    assert "coordinator ready" not in standby.log_text()  # it served nothing so far
    # Both serve metrics; the leader gauge says which one leads.
    assert sample(await scrape(leader.metrics_url()), "agentic_coordinator_leader") == 1
    assert sample(await scrape(standby.metrics_url()), "agentic_coordinator_leader") == 0

    leader.kill9()
    await standby.wait_ready("coordinator ready", timeout=30)
    assert sample(await scrape(standby.metrics_url()), "agentic_coordinator_leader") == 1
    record = await wait_finished(stack.store(), "ha-1", timeout=60)
    events = await run_events(js, "ha-1")

    assert record.status == "succeeded"
    assert record.output == "three done for guarantees"
    assert [e.seq for e in events] == list(range(len(events)))
    store = stack.store()
    for step in ("one", "two", "three"):
        assert [a.attempt for a in store.read_attempts("ha-1", step)] == [1]
    assert "coordinator 'coord-b' leads" in standby.log_text()
    assert "resumed 1 unfinished runs" in standby.log_text()


async def test_a_leader_that_stops_hands_over_and_the_new_one_serves_submits(
    stack: Stack, nc: NATS
) -> None:
    leader, standby = await leader_standby_and_worker(stack)
    quick = scripted_agent_data("quick", [DONE])

    await submit(nc, inline_request("before-1", ["only"], quick))
    assert (await wait_finished(stack.store(), "before-1")).status == "succeeded"
    assert leader.stop() == 0  # SIGTERM: drains, then gives the lease up
    await standby.wait_ready("coordinator ready", timeout=30)
    await submit(nc, inline_request("after-1", ["only"], quick))

    assert (await wait_finished(stack.store(), "after-1")).status == "succeeded"
    assert "another coordinator took the lease" not in leader.log_text()


async def test_a_leader_whose_lease_was_taken_stops_at_once_with_exit_code_1(
    stack: Stack, nc: NATS
) -> None:
    leader = stack.spawn_coordinator(identity="coord-a")
    await leader.wait_ready("coordinator ready")
    kv = await nc.jetstream().key_value(names.COORDINATOR_BUCKET)

    await kv.put(LEADER_KEY, b"intruder")  # as if another coordinator had won it

    code = await asyncio.to_thread(leader.process.wait, 30)
    assert code == 1
    assert "another coordinator took the lease: stopping now" in leader.log_text()


async def test_a_lease_that_expired_unseen_is_kept_unless_another_coordinator_held_it(
    nc: NATS,
) -> None:
    js = nc.jetstream()
    ttl = 1.0  # the bucket's max age: entries vanish a second after their last write
    lease = await Lease.acquire(js, "coord-a", ttl, stopping=asyncio.Event())
    assert lease is not None and lease.held
    kv = await lease_bucket(js, ttl)

    assert lease.valid()
    await asyncio.sleep(2 * ttl)  # no renewal, as if NATS had been out of reach
    assert not lease.valid()  # its timers wait from now on
    with pytest.raises(KeyNotFoundError):
        await kv.get(LEADER_KEY)
    assert await lease.renew()  # nobody wrote in between: still ours
    assert lease.valid()
    assert holder_of((await kv.get(LEADER_KEY)).value) == "coord-a"

    await asyncio.sleep(2 * ttl)
    other = Lease(kv, "coord-b", ttl)
    assert await other.try_acquire() is None  # coord-b led for a while…
    await other.release()  # …and stopped
    assert not await lease.renew()  # coord-a must not carry on with its stale runs
    assert not lease.held
    assert await Lease(kv, "coord-c", ttl).try_acquire() is None  # the lease is free


async def test_a_standby_waits_and_a_restarted_leader_takes_its_own_lease_back(nc: NATS) -> None:
    js = nc.jetstream()
    stopping = asyncio.Event()
    first = await Lease.acquire(js, "coord-a", 30.0, stopping=stopping)
    assert first is not None
    kv = await lease_bucket(js, 30.0)

    assert await Lease(kv, "coord-b", 30.0).try_acquire() == "coord-a"
    restarted = Lease(kv, "coord-a", 30.0)  # the same identity after a crash
    assert await restarted.try_acquire() is None
    assert not await first.renew()  # the old incarnation's revision is stale

    stopping.set()
    assert await Lease.acquire(js, "coord-b", 30.0, stopping=stopping) is None


async def test_a_renewal_applied_after_its_reply_was_lost_keeps_the_lease(nc: NATS) -> None:
    js = nc.jetstream()
    lease = await Lease.acquire(js, "coord-a", 30.0, stopping=asyncio.Event())
    assert lease is not None
    kv = await lease_bucket(js, 30.0)
    entry = await kv.get(LEADER_KEY)

    # What a renewal sent before a NATS stall does when the server applies it after the
    # client gave up waiting: the same value, one revision on.
    await kv.update(LEADER_KEY, entry.value or b"", last=entry.revision)

    assert await lease.renew(), "its own late write is not another coordinator's"
    assert lease.valid()
    restarted = Lease(kv, "coord-a", 30.0)  # the same identity, another process
    assert await restarted.try_acquire() is None
    assert not await lease.renew()


@pytest.mark.parametrize("stall_s", [7.0, 20.0])
async def test_two_coordinators_come_through_a_nats_stall_with_one_leader(
    server: EmbeddedNats, stack: Stack, stall_s: float
) -> None:
    leader, standby = await leader_standby_and_worker(stack)
    assert server.pid is not None
    run_id = f"stall-{stall_s:g}"
    steady = scripted_agent_data("steady", [DONE], delay_s=1.0)
    nc = await connect(Settings(nats_url=server.url), name="stall-test")
    try:
        await submit(nc, inline_request(run_id, ["one", "two", "three"], steady))
        await wait_event(nc.jetstream(), run_id, "step_started", step_id="one")

        os.kill(server.pid, signal.SIGSTOP)  # every client's requests now go unanswered
        await asyncio.sleep(stall_s)
        os.kill(server.pid, signal.SIGCONT)
        record = await wait_finished(stack.store(), run_id, timeout=120)
        await submit(nc, inline_request(f"{run_id}-after", ["only"], steady), timeout=30)
        after = await wait_finished(stack.store(), f"{run_id}-after", timeout=60)
        holder = holder_of(
            (await (await nc.jetstream().key_value(names.COORDINATOR_BUCKET)).get(LEADER_KEY)).value
        )
    finally:
        await nc.close()

    assert record.status == "succeeded" and after.status == "succeeded"
    by_identity = {"coord-a": leader, "coord-b": standby}
    assert by_identity[holder].alive, f"{holder} holds the lease but exited"
    other = by_identity["coord-b" if holder == "coord-a" else "coord-a"]
    if other.alive:  # on standby: it must not be leading too
        assert f"standby: coordinator {holder!r} leads" in other.log_text()
    else:  # it led before and saw the lease taken: it stopped, as designed
        assert other.process.returncode == 1
    for coordinator in (leader, standby):
        assert "Traceback" not in coordinator.log_text(), coordinator.log_text()[-3000:]
    store = stack.store()
    for step in ("one", "two", "three"):
        assert len(store.read_attempts(run_id, step)) == 1


async def test_a_renewal_applied_late_then_expired_does_not_cost_the_lease(nc: NATS) -> None:
    js = nc.jetstream()
    ttl = 1.0
    lease = await Lease.acquire(js, "coord-a", ttl, stopping=asyncio.Event())
    assert lease is not None
    kv = await lease_bucket(js, ttl)
    entry = await kv.get(LEADER_KEY)
    # A renewal sent while the cluster had no majority got no answer (the lease holds it in
    # doubt), was applied once the majority returned, then expired unrenewed.
    lease._in_doubt = True
    await kv.update(LEADER_KEY, entry.value or b"", last=entry.revision)
    await asyncio.sleep(2 * ttl)

    assert await lease.renew(), "its own late write is not another coordinator's"
    assert holder_of((await kv.get(LEADER_KEY)).value) == "coord-a"

    await asyncio.sleep(2 * ttl)  # now nothing in doubt: a gap means another coordinator
    other = Lease(kv, "coord-b", ttl)
    assert await other.try_acquire() is None
    await asyncio.sleep(2 * ttl)
    assert not await lease.renew()
