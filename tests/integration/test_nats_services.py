"""The services' lifecycle: a nats-server restart mid-run, burst workers, a graceful stop,
and goal requests planned by the coordinator.

Each test starts its own coordinator and workers (processes); the module's nats-server is
its own, because one test restarts it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentic.bus import EmbeddedNats, connect
from agentic.contracts import RunRecord, RunRequest, utcnow
from agentic.processes import children_of
from agentic.runtime.step import with_outputs_read
from agentic.settings import Settings
from tests.factories import DONE, inline_request, scripted_agent_data
from tests.integration.nats_stack import (
    Stack,
    process_gone,
    run_events,
    submit,
    wait_event,
    wait_finished,
)

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.procs]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A nats-server with file storage in a directory that outlives its restarts."""
    with EmbeddedNats(store_dir=tmp_path_factory.mktemp("jetstream")) as nats_server:
        yield nats_server


@pytest.fixture
def stack(server: EmbeddedNats, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(server.url, tmp_path, step_ack_wait_s="3")
    try:
        yield stack
    finally:
        stack.stop()


async def test_a_run_survives_a_nats_server_restart_in_its_middle(
    server: EmbeddedNats, stack: Stack
) -> None:
    await stack.start_coordinator()
    await stack.start_workers(1)
    nc = await connect(Settings(nats_url=server.url), name="restart-test")
    try:
        js = nc.jetstream()
        steady = scripted_agent_data("steady", [DONE], delay_s=1.0)
        await submit(nc, inline_request("restart-1", ["one", "two", "three"], steady))
        await wait_event(js, "restart-1", "step_started", step_id="two")

        await asyncio.to_thread(server.stop, 5.0)
        await asyncio.sleep(2.0)  # step "two" finishes while the server is down
        await asyncio.to_thread(server.start)
        record = await wait_finished(stack.store(), "restart-1", timeout=60)
        events = await run_events(js, "restart-1")
    finally:
        await nc.close()

    assert record.status == "succeeded"
    assert record.output == "three done for guarantees"
    assert [e.seq for e in events] == list(range(len(events)))
    store = stack.store()
    for step in ("one", "two", "three"):
        committed = store.read_result("restart-1", step)
        assert committed is not None and committed.status == "succeeded"
    assert stack.coordinator is not None and stack.coordinator.alive
    assert all(worker.alive for worker in stack.workers)


async def test_a_retry_waiting_out_its_backoff_survives_a_coordinator_restart(
    server: EmbeddedNats, tmp_path: Path
) -> None:
    stack = Stack(
        server.url,
        tmp_path,
        retry_backoff_base_s="600",
        retry_backoff_max_s="600",
        retry_jitter="0",
    )
    nc = await connect(Settings(nats_url=server.url), name="retry-restart-test")
    try:
        await asyncio.gather(stack.start_coordinator(), stack.start_workers(1))
        js = nc.jetstream()
        flaky = scripted_agent_data("flaky", [DONE], fail={"times": 1, "mode": "error"})
        await submit(nc, inline_request("retry-restart-1", ["only"], flaky, retries=1))
        retrying = await wait_event(js, "retry-restart-1", "step_retrying")
        assert retrying.data["delay_s"] == 600

        assert stack.coordinator is not None
        stack.coordinator.kill9()
        await stack.start_coordinator()
        record = await wait_finished(stack.store(), "retry-restart-1", timeout=30)
    finally:
        await nc.close()
        stack.stop()

    assert record.status == "succeeded"
    attempts = stack.store().read_attempts("retry-restart-1", "only")
    assert [(a.attempt, a.status) for a in attempts] == [(1, "failed"), (2, "succeeded")]


async def test_a_restarted_coordinator_leaves_a_started_step_with_its_worker(
    server: EmbeddedNats, stack: Stack
) -> None:
    # The step's message stays in AGENTIC_STEPS until the worker acknowledges it: publishing
    # it again would only be stopped by Msg-Id dedup, and only within its 2-minute window.
    await asyncio.gather(stack.start_coordinator(), stack.start_workers(1))
    nc = await connect(Settings(nats_url=server.url), name="held-step-test")
    try:
        js = nc.jetstream()
        slow = scripted_agent_data("slow", [DONE], delay_s=4.0)
        await submit(nc, inline_request("held-1", ["long", "after"], slow))
        await wait_event(js, "held-1", "step_started", step_id="long")

        assert stack.coordinator is not None
        stack.coordinator.kill9()
        await stack.start_coordinator()  # while "long" still runs on the worker
        record = await wait_finished(stack.store(), "held-1", timeout=60)
        events = await run_events(js, "held-1")
    finally:
        await nc.close()

    assert record.status == "succeeded"
    assert [e.seq for e in events] == list(range(len(events)))
    long_events = [e.type for e in events if e.step_id == "long"]
    assert long_events == ["step_ready", "step_started", "step_succeeded"]
    assert [a.attempt for a in stack.store().read_attempts("held-1", "long")] == [1]
    assert "resumed 1 unfinished runs" in stack.coordinator.log_text()


async def test_run_json_shows_a_long_step_running_and_keeps_the_spec_of_every_step(
    server: EmbeddedNats, stack: Stack
) -> None:
    await stack.start_coordinator()
    await stack.start_workers(1)
    nc = await connect(Settings(nats_url=server.url), name="snapshot-test")
    try:
        slow = scripted_agent_data("slow", [DONE], delay_s=3.0)
        await submit(nc, inline_request("snapshot-1", ["one", "two"], slow))
        await wait_event(nc.jetstream(), "snapshot-1", "step_started", step_id="one")
        store = stack.store()
        running = None
        for _ in range(40):  # run.json catches up within a second or so
            steps = {s.step_id: s.status for s in store.read_run("snapshot-1").steps}
            if steps["one"] == "running":
                running = steps
                break
            await asyncio.sleep(0.05)
        record = await wait_finished(store, "snapshot-1", timeout=60)
    finally:
        await nc.close()

    assert running == {"one": "running", "two": "pending"}
    assert record.status == "succeeded"
    assert [(s.step_id, s.status) for s in record.steps] == [
        ("one", "succeeded"),
        ("two", "succeeded"),
    ]
    second = store.read_spec("snapshot-1", "two")
    assert second.attempt == 1 and second.prior_all_earlier  # outputs by reference
    assert with_outputs_read(second, store).prior_outputs == {"one": "one done for guarantees"}


async def test_a_burst_worker_runs_the_queued_steps_and_exits_once_the_queue_is_empty(
    server: EmbeddedNats, stack: Stack
) -> None:
    await stack.start_coordinator()
    nc = await connect(Settings(nats_url=server.url), name="burst-test")
    try:
        quick = scripted_agent_data("quick", [DONE])
        await submit(nc, inline_request("burst-1", ["one", "two"], quick))
        await wait_event(nc.jetstream(), "burst-1", "step_ready")

        worker = stack.spawn_worker("--burst")
        code = await asyncio.to_thread(worker.process.wait, 60)
        record = await wait_finished(stack.store(), "burst-1", timeout=10)
    finally:
        await nc.close()

    assert code == 0
    assert record.status == "succeeded"


async def test_sigterm_lets_the_running_step_finish_before_the_worker_exits(
    server: EmbeddedNats, stack: Stack
) -> None:
    await stack.start_coordinator()
    (worker,) = await stack.start_workers(1)
    nc = await connect(Settings(nats_url=server.url), name="drain-test")
    try:
        js = nc.jetstream()
        slowish = scripted_agent_data("slowish", [DONE], delay_s=2.0)
        await submit(nc, inline_request("drain-1", ["only"], slowish))
        await wait_event(js, "drain-1", "step_started")

        worker.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.process.wait, 30)
        record = await wait_finished(stack.store(), "drain-1", timeout=10)
        events = await run_events(js, "drain-1")
    finally:
        await nc.close()

    assert code == 0
    assert record.status == "succeeded"
    assert [e.type for e in events].count("step_started") == 1


def fork_servers_of(pid: int) -> list[int]:
    """The warm fork servers among the children of ``pid``."""
    return [
        child
        for child in children_of(pid)
        if b"forkserver" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]


async def test_sigterm_stops_a_starting_worker_before_its_step_processes_are_ready(
    stack: Stack,
) -> None:
    await stack.start_coordinator()
    worker = stack.spawn_worker("--concurrency", "2")
    deadline = time.monotonic() + 60
    while not (servers := fork_servers_of(worker.pid)):  # it imports CrewAI for seconds
        assert worker.alive and time.monotonic() < deadline, worker.log_text()[-2000:]
        await asyncio.sleep(0.02)
    [server] = servers
    assert children_of(server) == [], "the fork server already forked: too late to test"
    children = children_of(worker.pid)

    worker.process.send_signal(signal.SIGTERM)
    asked = time.monotonic()
    code = await asyncio.to_thread(worker.process.wait, 30)
    took = time.monotonic() - asked

    assert code == 0
    assert "worker ready" not in worker.log_text(), "the start was not interrupted"
    assert took < 5.0, f"{took:.2f}s"  # 1 s on a quiet machine; room for a loaded one
    # Its children (the fork server, multiprocessing's resource tracker) end with it: the
    # server at once (a parent-death signal), the tracker once the worker's pipe closes.
    deadline = time.monotonic() + 5
    while not all(process_gone(pid) for pid in children):
        assert time.monotonic() < deadline, "a child outlived its worker"
        await asyncio.sleep(0.05)
    print(f"a starting worker stopped {took:.2f}s after SIGTERM")


PLANNER = """\
id: planner
type: scripted
role: Planner
goal: Plan
backstory: Plans with the quick agent.
script:
  replies:
    - '{"steps": [{"id": "look", "agent_provider_id": "quick", "description": "Look into {topic}.", "expected_output": "Notes."}, {"id": "answer", "agent_provider_id": "quick", "description": "Answer from the notes.", "expected_output": "An answer.", "depends_on": ["look"]}]}'
"""  # noqa: E501
QUICK_PROVIDER = """\
id: quick
type: scripted
role: Tester
goal: Finish {topic}
backstory: A scripted agent.
planner_hint: Does anything quickly.
script:
  replies: ["{step_id} done for {topic}"]
"""


async def test_a_goal_is_planned_by_the_coordinator_and_runs_on_the_workers(
    server: EmbeddedNats, stack: Stack
) -> None:
    providers = stack.root / "config" / "agent_providers"
    providers.mkdir(parents=True)
    (providers / "planner.yaml").write_text(PLANNER)
    (providers / "quick.yaml").write_text(QUICK_PROVIDER)
    earlier = RunRecord(  # what an earlier run on the topic left in the store
        run_id="earlier-1",
        status="succeeded",
        request=RunRequest(workflow_ref="notes"),
        backend="inprocess",
        output="Durable runs survive a crashed worker: the store keeps every result.",
        finished_at=utcnow(),
    )
    assert stack.store().create_run(earlier)
    await asyncio.gather(stack.start_coordinator(), stack.start_workers(1))
    nc = await connect(Settings(nats_url=server.url), name="goal-test")
    try:
        request = {"run_id": "goal-1", "goal": "Explain durable runs", "inputs": {"topic": "runs"}}
        reply = await submit(nc, request, timeout=60)
        record = await wait_finished(stack.store(), "goal-1", timeout=60)
    finally:
        await nc.close()

    assert reply["run_id"] == "goal-1"
    assert record.status == "succeeded"
    assert record.workflow is not None
    assert list(record.workflow.task_sequence) == ["look", "answer"]
    assert record.plan is not None
    assert record.output == "answer done for runs"
    # The coordinator's planner child read the knowledge index of the same store.
    assert record.plan["knowledge"]["sources"] == ["run earlier-1"]
    assert "[run earlier-1]" in record.plan["prompt"] and "crashed worker" in record.plan["prompt"]
