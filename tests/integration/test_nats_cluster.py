"""Replicated JetStream on a real 3-node nats-server cluster, with a node killed mid-run.

Three clustered nats-servers on loopback, every stream and the lease bucket with three
replicas (``AGENTIC_NATS_REPLICAS=3``), a coordinator and two workers as processes given the
list of the three URLs. Each test submits a stream of runs with second-long steps, kills
with SIGKILL the node that leads one of the JetStream objects while steps run, and checks
that nothing was lost or done twice; then it restarts the node and waits until the cluster
reports every replica caught up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from nats.aio.client import Client as NATS

from agentic import names
from agentic.bus import EmbeddedCluster, connect
from agentic.errors import BusError
from agentic.settings import Settings
from tests.factories import DONE, inline_request, scripted_agent_data
from tests.integration.nats_stack import Stack, run_events, submit, wait_event, wait_finished

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.procs]

RUNS = 4
STEPS = ("gather", "draft", "polish")
STEADY = scripted_agent_data("steady", [DONE], delay_s=1.5)

# Leader elections take seconds, and on a loaded machine many more: room beyond the
# suite's 120 s per test.
pytestmark.append(pytest.mark.timeout(300))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(3, store_dir=tmp_path_factory.mktemp("cluster")) as nodes:
        yield nodes


@pytest.fixture(scope="module")
def stack(cluster: EmbeddedCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A coordinator and two workers of two slots each, on the cluster's URL list."""
    stack = Stack(
        cluster.url, tmp_path_factory.mktemp("stack"), nats_replicas="3", log_level="INFO"
    )

    async def start() -> None:
        await stack.start_coordinator()
        await stack.start_workers(2, "--concurrency", "2")

    try:
        asyncio.run(start())
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def nc(cluster: EmbeddedCluster) -> AsyncIterator[NATS]:
    client = await connect(Settings(nats_url=cluster.url), name="cluster-tests")
    try:
        yield client
    finally:
        await client.close()


async def test_every_stream_and_both_buckets_have_three_replicas(stack: Stack, nc: NATS) -> None:
    js = nc.jetstream()
    objects = [
        names.EVENTS_STREAM,
        names.STEPS_STREAM,
        names.DLQ_STREAM,
        names.ADVISORIES_STREAM,
        f"KV_{names.COORDINATOR_BUCKET}",
        f"KV_{names.CLAIMS_BUCKET}",
    ]
    for stream in objects:
        info = await js.stream_info(stream)
        assert info.config.num_replicas == 3, stream


async def test_provisioning_more_replicas_than_servers_names_the_stream_and_the_setting(
    stack: Stack, nc: NATS
) -> None:
    from agentic.bus.provision import provision

    with pytest.raises(BusError) as refused:
        await provision(nc.jetstream(), Settings(nats_url="unused", nats_replicas=5))

    assert "AGENTIC_EVENTS" in str(refused.value)
    assert "AGENTIC_NATS_REPLICAS" in str(refused.value)


@pytest.mark.parametrize(
    "led", [names.STEPS_STREAM, names.EVENTS_STREAM, f"KV_{names.COORDINATOR_BUCKET}"]
)
async def test_killing_the_node_that_leads_a_stream_mid_run_loses_and_repeats_nothing(
    cluster: EmbeddedCluster, stack: Stack, nc: NATS, led: str
) -> None:
    js = nc.jetstream()
    prefix = f"kill-{led.lower().replace('_', '-')}"
    run_ids = [f"{prefix}-{i}" for i in range(RUNS)]
    for run_id in run_ids:
        assert (await submit(nc, inline_request(run_id, STEPS, STEADY)))["run_id"] == run_id
    await wait_event(js, run_ids[0], "step_succeeded", step_id=STEPS[0])
    victim = cluster.leader_of(led)
    assert victim is not None, f"no node leads {led}"

    victim.stop(grace_s=0)  # SIGKILL
    killed_at = time.monotonic()
    records = [await wait_finished(stack.store(), r, timeout=150) for r in run_ids]

    assert [r.status for r in records] == ["succeeded"] * RUNS
    store = stack.store()
    redelivered = 0
    for run_id in run_ids:
        for step in STEPS:
            assert [a.attempt for a in store.read_attempts(run_id, step)] == [1], (run_id, step)
        events = await run_events(js, run_id, timeout=60)
        redelivered += sum(
            e.data.get("delivery", 1) > 1 for e in events if e.type == "step_started"
        )
        assert [e.seq for e in events] == list(range(len(events))), run_id
        started = [e.step_id for e in events if e.type == "step_started"]
        assert sorted(started) == sorted(STEPS), f"{run_id}: a step ran twice: {started}"
        assert [e.type for e in events].count("succeeded") == 1
    survivors = [s for s in (stack.coordinator, *stack.workers) if s is not None]
    assert all(s.alive for s in survivors), "a service exited when a NATS node died"

    victim.start()
    await asyncio.to_thread(cluster.wait_healthy, 60.0)
    assert cluster.leader_of(led) is not None
    took = time.monotonic() - killed_at
    print(f"{led}: {RUNS} runs finished {took:.1f}s after the kill; {redelivered} redelivered")


async def test_a_follower_whose_node_dies_resumes_and_sees_every_event_once(
    cluster: EmbeddedCluster, stack: Stack, nc: NATS
) -> None:
    from agentic.bus.follow import RunEvents

    settings = Settings(nats_url=cluster.url)
    follower = await connect(settings, name="cluster-follower")
    assert follower.connected_url is not None
    own_node = next(n for n in cluster.nodes if n.port == follower.connected_url.port)
    seen = []
    try:
        async with RunEvents(follower.jetstream(), "followed-1", settings) as events:
            await submit(nc, inline_request("followed-1", STEPS, STEADY))
            while not any(e.type == "step_started" for e in seen):
                if (event := await events.next(timeout=30)) is not None:
                    seen.append(event)
            own_node.stop(grace_s=0)  # SIGKILL the node this client is connected to
            deadline = time.monotonic() + 90
            while seen[-1].type != "succeeded":
                assert time.monotonic() < deadline, f"the follower stopped at {seen[-1]}"
                if (event := await events.next(timeout=1)) is not None:
                    seen.append(event)
    finally:
        await follower.close()
        own_node.start()
        await asyncio.to_thread(cluster.wait_healthy, 60.0)

    assert [e.seq for e in seen] == list(range(len(seen)))
    assert [e.type for e in seen].count("step_succeeded") == len(STEPS)


async def test_losing_two_nodes_stops_progress_until_one_returns_and_loses_nothing(
    cluster: EmbeddedCluster, stack: Stack, nc: NATS
) -> None:
    js = nc.jetstream()
    run_ids = [f"two-down-{i}" for i in range(3)]
    for run_id in run_ids:
        assert (await submit(nc, inline_request(run_id, STEPS, STEADY)))["run_id"] == run_id
    await wait_event(js, run_ids[0], "step_succeeded", step_id=STEPS[0])
    survivor, *lost = cluster.nodes
    for node in lost:
        node.stop(grace_s=0)
    await asyncio.sleep(6)  # every step in flight has finished by now, on its own
    store = stack.store()
    stalled = [store.read_run(r).status for r in run_ids]

    lost[0].start()  # a majority again
    back_at = time.monotonic()
    records = [await wait_finished(store, r, timeout=150) for r in run_ids]
    print(f"two nodes lost: runs finished {time.monotonic() - back_at:.1f}s after one returned")
    lost[1].start()
    await asyncio.to_thread(cluster.wait_healthy, 60.0)

    assert stalled == ["running"] * len(run_ids), "no run can finish without a majority"
    assert [r.status for r in records] == ["succeeded"] * len(run_ids)
    for run_id in run_ids:
        for step in STEPS:
            assert [a.attempt for a in store.read_attempts(run_id, step)] == [1], (run_id, step)
        events = await run_events(js, run_id, timeout=60)
        assert [e.seq for e in events] == list(range(len(events))), run_id
        assert sorted(e.step_id for e in events if e.type == "step_started") == sorted(STEPS)
    assert survivor.running
    assert all(s.alive for s in (stack.coordinator, *stack.workers) if s is not None)
