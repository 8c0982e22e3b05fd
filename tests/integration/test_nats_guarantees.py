"""The guarantees of the event-driven pipeline (DESIGN §4), with real processes.

One nats-server, one coordinator and two workers (``python -m agentic coordinator`` /
``worker``) serve the whole module; the tests that kill a service come last and start a
replacement where later tests need one. Steps use the offline ``scripted`` provider.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from agentic import names
from agentic.bus import EmbeddedNats
from agentic.contracts import StepSpec
from agentic.preparation import prepare_run
from agentic.settings import Settings
from tests.factories import DONE, inline_request, scripted_agent_data
from tests.integration.nats_stack import (
    Stack,
    cancel,
    dead_letter_of,
    process_gone,
    run_events,
    sample,
    scrape,
    submit,
    wait_event,
    wait_finished,
    write_quick_catalog,
)

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.procs]

MAX_MESSAGE_BYTES = 65_536
IMPORTTIME = ("-X", "importtime")
QUICK = scripted_agent_data("quick", [DONE])


@pytest.fixture(scope="module")
def stack(nats_server: EmbeddedNats, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A coordinator and two single-slot workers; small ack wait and max deliveries."""
    root = tmp_path_factory.mktemp("stack")
    write_quick_catalog(root)
    stack = Stack(
        nats_server.url,
        root,
        step_ack_wait_s="3",
        step_max_deliver="2",
        max_message_bytes=str(MAX_MESSAGE_BYTES),
        retry_backoff_base_s="0.2",
        retry_jitter="0",
        metrics_port="0",  # each service on a free port, which it logs
    )

    async def start() -> None:
        # -X importtime logs every module the coordinator imports, for the last test.
        await stack.start_coordinator(*IMPORTTIME)
        await stack.start_workers(2)

    try:
        asyncio.run(start())
        yield stack
    finally:
        stack.stop()


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    from agentic.bus import connect

    client = await connect(Settings(nats_url=nats_url), name="guarantee-tests")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def js(nc: NATS) -> JetStreamContext:
    return nc.jetstream()


async def test_a_submitted_run_succeeds_and_its_events_are_numbered_without_gaps(
    stack: Stack, nc: NATS, js: JetStreamContext
) -> None:
    reply = await submit(nc, inline_request("basic-1", ["research", "write"], QUICK))

    assert reply["run_id"] == "basic-1"
    record = await wait_finished(stack.store(), "basic-1")
    assert record.status == "succeeded"
    assert record.output == "write done for guarantees"
    assert [s.status for s in record.steps] == ["succeeded", "succeeded"]
    events = await run_events(js, "basic-1")
    assert [e.seq for e in events] == list(range(len(events)))
    assert [e.type for e in events] == [
        "planned",
        "step_ready", "step_started", "step_succeeded",
        "step_ready", "step_started", "step_succeeded",
        "succeeded",
    ]  # fmt: skip
    assert events[-1].data["output"] == "write done for guarantees"


async def test_the_coordinators_and_workers_metrics_move_as_a_run_does(
    stack: Stack, nc: NATS, js: JetStreamContext
) -> None:
    # Every step's first attempt fails (and is retried), every second one runs for 0.5 s.
    metered = {
        **scripted_agent_data("metered", [DONE], delay_s=0.5, fail={"times": 1, "mode": "error"}),
        "model": "metered-1",
        "price": {"input_per_million": 1000.0, "output_per_million": 2000.0},
    }
    request = inline_request("metrics-1", ["one", "two"], metered, retries=1)
    request["workflow"]["workflow"]["name"] = "metrics"
    assert stack.coordinator is not None
    coordinator = stack.coordinator.metrics_url()
    workers = [worker.metrics_url() for worker in stack.workers]
    before = await scrape(coordinator)
    workers_before = await scrape(*workers)

    await submit(nc, request)
    await wait_event(
        js, "metrics-1", "step_started", step_id="one", matches=lambda e: e.attempt == 2
    )
    during = await scrape(*workers)
    coordinator_during = await scrape(coordinator)
    record = await wait_finished(stack.store(), "metrics-1")
    await wait_event(js, "metrics-1", "succeeded")  # sent once the coordinator is done with it
    after = await scrape(coordinator)
    workers_after = await scrape(*workers)

    assert record.status == "succeeded"
    assert sample(before, "agentic_coordinator_leader") == 1
    assert sample(after, "agentic_coordinator_leader") == 1
    assert sample(during, "agentic_worker_steps_in_flight", pool="default") == 1
    running = sample(before, "agentic_runs_running")
    assert sample(coordinator_during, "agentic_runs_running") == running + 1
    assert sample(after, "agentic_runs_running") == running
    assert sample(workers_after, "agentic_worker_steps_in_flight", pool="default") == 0
    assert sample(workers_after, "agentic_worker_slots", pool="default") == 2

    def moved(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    def worker_moved(name: str, **labels: str) -> float:
        return sample(workers_after, name, **labels) - sample(workers_before, name, **labels)

    run = {"workflow": "metrics"}
    assert moved("agentic_runs_started_total", **run) == 1
    assert moved("agentic_runs_finished_total", **run, status="succeeded") == 1
    assert moved("agentic_runs_finished_total", **run, status="failed") == 0
    for step in ("one", "two"):
        labels = {**run, "step": step, "provider": "metered"}
        assert moved("agentic_step_attempts_total", **labels) == 2
        assert moved("agentic_step_retries_total", **run, step=step) == 1
        for status in ("failed", "succeeded"):
            assert moved("agentic_step_duration_seconds_count", **labels, status=status) == 1
        # The successful attempt slept 0.5 s: it lands in the histogram's buckets above that.
        ok = {**labels, "status": "succeeded"}
        assert moved("agentic_step_duration_seconds_bucket", **ok, le="0.25") == 0
        assert moved("agentic_step_duration_seconds_bucket", **ok, le="5.0") == 1
        assert moved("agentic_step_duration_seconds_sum", **ok) >= 0.5
    errors = {"provider": "metered", "type": "ScriptedError"}
    assert moved("agentic_step_failures_total", **run, **errors) == 2
    # Tokens and cost are what the attempts recorded in the store.
    attempts = [a for s in ("one", "two") for a in stack.store().read_attempts("metrics-1", s)]
    model = {"provider": "metered", "model": "metered-1"}
    prompt = sum(a.usage.prompt_tokens for a in attempts)
    assert prompt > 0
    assert moved("agentic_tokens_total", **model, kind="prompt") == prompt
    completion = sum(a.usage.completion_tokens for a in attempts)
    assert moved("agentic_tokens_total", **model, kind="completion") == completion
    cost = sum(a.usage.cost_usd or 0.0 for a in attempts)
    assert cost > 0 and moved("agentic_cost_usd_total", **model) == pytest.approx(cost)

    pool = {"pool": "default", "provider": "metered"}
    assert worker_moved("agentic_worker_attempts_total", **pool, outcome="succeeded") == 2
    assert worker_moved("agentic_worker_attempts_total", **pool, outcome="failed") == 2
    assert worker_moved("agentic_worker_step_errors_total", **pool, type="ScriptedError") == 2
    assert worker_moved("agentic_worker_step_duration_seconds_count", **pool) == 4
    # The running step's message counts in the lag; the queue is empty once the last step
    # is acknowledged.
    lag = ("agentic_queue_lag", frozenset({("pool", "default")}))
    assert coordinator_during[lag] == 1
    deadline = time.monotonic() + 5
    while (await scrape(coordinator))[lag] != 0:
        assert time.monotonic() < deadline, "the queue lag stayed above 0"
        await asyncio.sleep(0.1)


async def test_the_same_run_id_submitted_twice_starts_one_run(
    stack: Stack, nc: NATS, js: JetStreamContext
) -> None:
    request = inline_request("twice-1", ["only"], QUICK)

    replies = await asyncio.gather(submit(nc, request), submit(nc, request))
    record = await wait_finished(stack.store(), "twice-1")
    again = await submit(nc, request)

    assert [reply["run_id"] for reply in replies] == ["twice-1"] * 2
    assert again["run_id"] == "twice-1"
    assert record.status == "succeeded"
    types = [e.type for e in await run_events(js, "twice-1")]
    assert types.count("planned") == 1
    assert types.count("step_started") == 1
    assert [a.attempt for a in stack.store().read_attempts("twice-1", "only")] == [1]


async def test_a_run_created_in_the_store_before_its_submit_is_started_by_the_submit(
    stack: Stack, nc: NATS
) -> None:
    from agentic.catalog import load_catalog
    from agentic.contracts import RunRequest

    request = RunRequest.model_validate(inline_request("precreated-1", ["only"], QUICK))
    record = prepare_run(
        request.model_copy(update={"backend": "nats"}),
        settings=Settings(),
        catalog=load_catalog([], missing_ok=True),
    )
    store = stack.store()
    assert store.create_run(record)

    # Another workflow under that run id is refused: a run id names one run.
    other = await submit(nc, {"run_id": "precreated-1", "workflow_ref": "quick_pair"})
    assert "exists and is a run of workflow 'guarantees'" in other["error"]
    reply = await submit(nc, inline_request("precreated-1", ["only"], QUICK))

    assert reply["run_id"] == "precreated-1"
    finished = await wait_finished(store, "precreated-1")
    assert finished.status == "succeeded"
    assert finished.workflow is not None and finished.workflow.name == "guarantees"


async def test_malformed_requests_get_an_error_reply_and_the_coordinator_keeps_serving(
    stack: Stack, nc: NATS
) -> None:
    oversized = inline_request("big-1", ["only"], QUICK, topic="x" * MAX_MESSAGE_BYTES)

    not_json = await submit(nc, b"{this is not json")
    unknown = await submit(nc, {"workflow_ref": "no_such_workflow"})
    unsafe = await submit(nc, {"run_id": "../../etc", "workflow_ref": "quick_pair"})
    too_big = await submit(nc, oversized)
    two_sources = await submit(nc, {"workflow_ref": "quick_pair", "goal": "anything"})
    valid = await submit(nc, {"run_id": "after-bad-1", "workflow_ref": "quick_pair"})

    assert "invalid RunRequest" in not_json["error"]
    assert "unknown workflow 'no_such_workflow'" in unknown["error"]
    assert "run_id" in unsafe["error"]
    assert f"exceeds the limit of {MAX_MESSAGE_BYTES} bytes" in too_big["error"]
    assert "exactly one of" in two_sources["error"] or "at most one of" in two_sources["error"]
    assert not stack.store().run_exists("big-1")
    assert valid["run_id"] == "after-bad-1"
    record = await wait_finished(stack.store(), "after-bad-1")
    assert record.status == "succeeded"
    assert record.output == "second done for catalog runs"


async def test_a_step_failing_with_a_retryable_error_is_retried_as_a_new_attempt(
    stack: Stack, js: JetStreamContext, nc: NATS
) -> None:
    flaky = scripted_agent_data(
        "flaky", [DONE], fail={"times": 1, "mode": "error", "message": "rate"}
    )

    await submit(nc, inline_request("retry-1", ["only"], flaky, retries=1))
    record = await wait_finished(stack.store(), "retry-1")

    assert record.status == "succeeded"
    attempts = stack.store().read_attempts("retry-1", "only")
    assert [(a.attempt, a.status) for a in attempts] == [(1, "failed"), (2, "succeeded")]
    committed = stack.store().read_result("retry-1", "only")
    assert committed is not None and committed.attempt == 2
    types = [(e.type, e.attempt) for e in await run_events(js, "retry-1")]
    assert ("step_retrying", 2) in types
    assert ("step_started", 2) in types


async def test_a_step_past_its_timeout_is_killed_and_fails_as_a_timeout(
    stack: Stack, nc: NATS, js: JetStreamContext
) -> None:
    slow = scripted_agent_data("slow", [DONE], delay_s=60)
    await submit(nc, inline_request("timeout-1", ["long"], slow, timeout_s=1, retries=0))
    started = await wait_event(js, "timeout-1", "step_started")
    record = await wait_finished(stack.store(), "timeout-1", timeout=15)

    assert record.status == "failed"
    assert record.error is not None
    assert "StepTimeout: attempt 1 exceeded its timeout of 1 s" in record.error
    assert process_gone(started.data["step_pid"])
    [attempt] = stack.store().read_attempts("timeout-1", "long")
    timing = attempt.timing
    assert timing.started_at is not None and timing.finished_at is not None, timing
    # `agentic show` fills "started" and "duration" from these: about the 1 s timeout
    assert 0.9 <= (timing.finished_at - timing.started_at).total_seconds() < 10


def immutable(path: Path, on: bool) -> None:
    """``chattr [+-]i``: nothing can be created in ``path`` while set, not even by root (a
    store that refuses writes, as a read-only or full volume does)."""
    done = subprocess.run(
        ["chattr", "+i" if on else "-i", str(path)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot make the store refuse writes here: {done.stderr.strip()}")


async def test_a_store_refusing_writes_for_8_s_is_waited_out_without_running_the_step_again(
    stack: Stack, nc: NATS, js: JetStreamContext
) -> None:
    steady = scripted_agent_data("steady", [DONE], delay_s=1.0)
    await submit(nc, inline_request("outage-1", ["work"], steady))
    await wait_event(js, "outage-1", "step_started")
    step_dir = stack.store_dir / "runs" / "outage-1" / "steps" / "work"

    immutable(step_dir, True)  # the step finishes meanwhile; its result cannot be written
    try:
        await asyncio.sleep(8)  # over twice the ack wait (3 s): in-progress acks keep it
        assert stack.store().read_result("outage-1", "work") is None
    finally:
        immutable(step_dir, False)
    record = await wait_finished(stack.store(), "outage-1", timeout=30)

    assert record.status == "succeeded"
    events = await run_events(js, "outage-1")
    started = [e.data["delivery"] for e in events if e.type == "step_started"]
    assert started == [1], "the step ran again because its result could not be written"
    assert [a.attempt for a in stack.store().read_attempts("outage-1", "work")] == [1]
    assert any("recording outage-1/work attempt 1 failed" in w.log_text() for w in stack.workers)


async def test_a_worker_frozen_past_the_ack_wait_stops_its_step_once_it_sees_the_redelivery(
    stack: Stack, nc: NATS, js: JetStreamContext
) -> None:
    if sum(w.alive for w in stack.workers) < 2:
        await stack.start_workers(2 - sum(w.alive for w in stack.workers))
    long = scripted_agent_data("long", [DONE], delay_s=8.0)
    await submit(nc, inline_request("frozen-1", ["work"], long))
    first = await wait_event(js, "frozen-1", "step_started")
    frozen = stack.worker_with_pid(first.data["worker"]["pid"])

    os.kill(frozen.pid, signal.SIGSTOP)  # no in-progress acks: JetStream redelivers
    try:
        second = await wait_event(
            js, "frozen-1", "step_started", matches=lambda e: e.data["delivery"] == 2
        )
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    resumed = time.monotonic()
    while not process_gone(first.data["step_pid"]):
        assert time.monotonic() - resumed < 5, "the overtaken delivery kept running"
        await asyncio.sleep(0.05)
    record = await wait_finished(stack.store(), "frozen-1", timeout=60)

    assert record.status == "succeeded"
    assert second.data["worker"]["pid"] != frozen.pid
    committed = stack.store().read_result("frozen-1", "work")
    assert committed is not None and committed.worker is not None
    assert committed.worker.pid != first.data["step_pid"]
    assert [a.attempt for a in stack.store().read_attempts("frozen-1", "work")] == [1]
    assert "a newer delivery runs it; stopped here" in frozen.log_text()


async def test_cancel_kills_the_running_step_within_seconds(
    stack: Stack, nc: NATS, js: JetStreamContext
) -> None:
    slow = scripted_agent_data("slow", [DONE], delay_s=60)
    await submit(nc, inline_request("cancel-1", ["long"], slow))
    started = await wait_event(js, "cancel-1", "step_started")
    step_pid = started.data["step_pid"]
    assert not process_gone(step_pid)

    asked = time.monotonic()
    reply = await cancel(nc, "cancel-1")
    record = await wait_finished(stack.store(), "cancel-1", timeout=5)
    while not process_gone(step_pid) and time.monotonic() - asked < 5:
        await asyncio.sleep(0.05)

    assert reply == {"ok": True, "run_id": "cancel-1", "status": "cancelled"}
    assert record.status == "cancelled"
    assert [s.status for s in record.steps] == ["cancelled"]
    assert process_gone(step_pid), "the step process still runs 5 s after the cancel"
    assert stack.store().read_result("cancel-1", "long") is None
    unknown = await cancel(nc, "no-such-run")
    assert "unknown run 'no-such-run'" in unknown["error"]


async def test_a_thread_isolated_worker_stops_timed_out_and_cancelled_steps_and_keeps_serving(
    stack: Stack, nc: NATS, js: JetStreamContext
) -> None:
    await stack.start_workers(1, "--pool", "threads", "--isolation", "thread", "--concurrency", "4")
    hang = scripted_agent_data("hang", [DONE], fail={"times": 100, "mode": "hang"})
    slow = scripted_agent_data("slow", [DONE], delay_s=60)
    await submit(
        nc, inline_request("thread-1", ["long"], hang, timeout_s=1, retries=0, pool="threads")
    )
    await submit(nc, inline_request("thread-2", ["long"], slow, pool="threads"))
    started = await wait_event(js, "thread-2", "step_started")
    host = started.data["step_pid"]

    asked = time.monotonic()
    reply = await cancel(nc, "thread-2")
    cancelled = await wait_finished(stack.store(), "thread-2", timeout=5)
    timed_out = await wait_finished(stack.store(), "thread-1", timeout=15)
    while not process_gone(host):  # both of its steps dropped: the host is killed
        assert time.monotonic() - asked < 15, "the retired thread host still runs"
        await asyncio.sleep(0.05)
    await submit(nc, inline_request("thread-3", ["a", "b"], QUICK, pool="threads"))
    after = await wait_finished(stack.store(), "thread-3", timeout=30)

    assert reply["status"] == "cancelled" and cancelled.status == "cancelled"
    assert stack.store().read_result("thread-2", "long") is None
    assert timed_out.status == "failed"
    assert "StepTimeout: attempt 1 exceeded its timeout of 1 s" in (timed_out.error or "")
    assert after.status == "succeeded"
    events = await run_events(js, "thread-3")
    assert {e.data["step_pid"] for e in events if e.type == "step_started"} != {host}


async def test_a_step_of_a_new_pool_waits_in_its_own_consumer_created_before_publishing(
    stack: Stack, nc: NATS, js: JetStreamContext
) -> None:
    await submit(nc, inline_request("pool-1", ["gpu_step"], QUICK, pool="gpu"))
    await wait_event(js, "pool-1", "step_ready")
    await asyncio.sleep(0.5)  # no worker of pool gpu: nothing may start it

    consumer = await js.consumer_info(names.STEPS_STREAM, names.workers_consumer("gpu"))
    reply = await cancel(nc, "pool-1")
    record = await wait_finished(stack.store(), "pool-1", timeout=5)

    assert consumer.num_pending == 1
    assert consumer.config.filter_subject == names.steps_subject("gpu")
    assert reply["status"] == "cancelled"
    assert [s.status for s in record.steps] == ["cancelled"]
    types = [e.type for e in await run_events(js, "pool-1")]
    assert "step_started" not in types


async def test_a_step_that_always_crashes_its_worker_ends_in_the_dlq_and_fails_its_run(
    stack: Stack, nc: NATS, js: JetStreamContext
) -> None:
    crasher = scripted_agent_data("crasher", [DONE], fail={"times": 100, "mode": "crash"})
    assert stack.coordinator is not None
    coordinator = stack.coordinator.metrics_url()
    workers = [worker.metrics_url() for worker in stack.workers]
    before, workers_before = await scrape(coordinator), await scrape(*workers)

    await submit(nc, inline_request("dlq-1", ["boom"], crasher))
    record = await wait_finished(stack.store(), "dlq-1", timeout=90)

    assert record.status == "failed"
    assert record.error is not None
    assert "step 'boom' of run 'dlq-1' exhausted 2 deliveries" in record.error
    assert "its worker crashed or was killed every time" in record.error
    assert "moved to the dead-letter queue (agentic.dlq.default)" in record.error
    letter = await dead_letter_of(js, "dlq-1")
    spec = StepSpec.model_validate_json(letter.data or b"")
    assert (spec.run_id, spec.step_id, spec.attempt) == ("dlq-1", "boom", 1)
    assert letter.headers is not None
    assert "exhausted 2 deliveries" in letter.headers[names.DLQ_REASON_HEADER]
    with pytest.raises(NotFoundError):
        await js.get_msg(names.STEPS_STREAM, int(letter.headers[names.DLQ_STREAM_SEQ_HEADER]))
    committed = stack.store().read_result("dlq-1", "boom")
    assert committed is not None and committed.error is not None
    assert committed.error.type == "DeadLettered"
    # The metrics say so too: one dead letter (counted once the message moved), a failure
    # of that type, and two crashed deliveries on the workers.
    letters = {"pool": "default", "reason": "max_deliveries"}
    counted = sample(before, "agentic_dead_letters_total", **letters)
    deadline = time.monotonic() + 5
    after = await scrape(coordinator)
    while sample(after, "agentic_dead_letters_total", **letters) == counted:
        assert time.monotonic() < deadline, "no dead letter counted"
        await asyncio.sleep(0.1)
        after = await scrape(coordinator)
    assert sample(after, "agentic_dead_letters_total", **letters) == counted + 1
    failed = {"workflow": "guarantees", "provider": "crasher", "type": "DeadLettered"}
    failures = sample(after, "agentic_step_failures_total", **failed)
    assert failures == sample(before, "agentic_step_failures_total", **failed) + 1
    workers_after = await scrape(*workers)
    crashed = {"pool": "default", "provider": "crasher", "outcome": "crashed"}
    assert sample(workers_after, "agentic_worker_attempts_total", **crashed) == 2
    assert sample(workers_before, "agentic_worker_attempts_total", **crashed) == 0


async def test_a_worker_killed_mid_step_is_redelivered_and_the_result_is_committed_once(
    stack: Stack, nc: NATS, js: JetStreamContext
) -> None:
    slowish = scripted_agent_data("slowish", [DONE], delay_s=2.5)
    await submit(nc, inline_request("killworker-1", ["work"], slowish))
    first = await wait_event(js, "killworker-1", "step_started")
    victim = stack.worker_with_pid(first.data["worker"]["pid"])

    victim.kill9()
    record = await wait_finished(stack.store(), "killworker-1", timeout=60)

    assert record.status == "succeeded"
    assert process_gone(first.data["step_pid"]), "the killed worker's step process survived it"
    events = await run_events(js, "killworker-1")
    deliveries = [e.data["delivery"] for e in events if e.type == "step_started"]
    assert deliveries == [1, 2]
    assert [e.type for e in events].count("step_succeeded") == 1
    store = stack.store()
    assert [a.attempt for a in store.read_attempts("killworker-1", "work")] == [1]
    committed = store.read_result("killworker-1", "work")
    assert committed is not None and committed.worker is not None
    assert committed.worker.pid != first.data["step_pid"]
    result_files = list((stack.store_dir / "runs" / "killworker-1").rglob("result.json"))
    assert len(result_files) == 1


async def test_a_coordinator_killed_mid_run_resumes_it_after_a_restart(
    stack: Stack, nc: NATS, js: JetStreamContext
) -> None:
    if sum(w.alive for w in stack.workers) < 1:
        await stack.start_workers(1)
    steady = scripted_agent_data("steady", [DONE], delay_s=1.0)
    await submit(nc, inline_request("killcoord-1", ["one", "two", "three"], steady))
    await wait_event(js, "killcoord-1", "step_started", step_id="two")

    assert stack.coordinator is not None
    stack.coordinator.kill9()
    await asyncio.sleep(1.5)  # step "two" finishes while no coordinator runs
    await stack.start_coordinator(*IMPORTTIME)
    record = await wait_finished(stack.store(), "killcoord-1", timeout=60)

    assert record.status == "succeeded"
    assert record.output == "three done for guarantees"
    events = await run_events(js, "killcoord-1")
    assert [e.seq for e in events] == list(range(len(events)))
    started = [e.step_id for e in events if e.type == "step_started"]
    assert started.count("one") == 1
    assert started.count("three") == 1
    store = stack.store()
    for step in ("one", "two", "three"):
        assert [a.attempt for a in store.read_attempts("killcoord-1", step)] == [1]


def test_check_reports_health_and_a_service_without_nats_exits_1(stack: Stack) -> None:
    for command in (["coordinator", "--check"], ["worker", "--check", "--pool", "default"]):
        done = subprocess.run(
            [sys.executable, "-m", "agentic", *command],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    unreachable = {**stack.env, "AGENTIC_NATS_URL": "nats://127.0.0.1:1"}
    done = subprocess.run(
        [sys.executable, "-m", "agentic", "coordinator", "--check"],
        env=unreachable,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot connect to NATS" in done.stderr
    service = subprocess.run(
        [sys.executable, "-m", "agentic", "coordinator"],
        env={**unreachable, "AGENTIC_LOG_LEVEL": "ERROR"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert service.returncode == 1
    assert service.stderr.strip().splitlines()[-1].startswith("error: cannot connect to NATS")


def test_the_coordinator_process_never_imported_crewai(stack: Stack) -> None:
    for coordinator in stack.coordinators:
        imported = [
            line.rsplit("|", 1)[1].strip()
            for line in coordinator.log_text().splitlines()
            if line.startswith("import time:") and "|" in line
        ]
        assert "agentic.cli" in imported, "the log holds no -X importtime output"
        assert "services.coordinator.service" in imported
        offending = [m for m in imported if m.split(".")[0] == "crewai" or "runtime" in m]
        assert offending == [], f"the coordinator imported {offending[:5]}"
