"""Following a run's events and asking the coordinator, against a real nats-server."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from agentic import names
from agentic.bus import EmbeddedNats, connect, provision, publish_event
from agentic.bus.follow import RunEvents, started_attempts
from agentic.bus.requests import cancel_run, submit_run
from agentic.contracts import RunEvent, RunRequest
from agentic.errors import BusError, MessageTooLargeError
from agentic.settings import Settings

pytestmark = [pytest.mark.nats, pytest.mark.procs]


async def collect(events: RunEvents, n: int, within_s: float) -> list[RunEvent]:
    got: list[RunEvent] = []
    deadline = time.monotonic() + within_s
    while len(got) < n and time.monotonic() < deadline:
        event = await events.next(timeout=0.5)
        if event is not None:
            got.append(event)
    return got


async def test_events_published_before_subscribing_arrive_in_order_and_only_for_that_run(
    nats_settings: Settings,
) -> None:
    nc = await connect(nats_settings, name="test-follow")
    js = nc.jetstream()
    await provision(js, nats_settings)
    for seq, kind in enumerate(["requested", "planned", "step_ready"]):
        await publish_event(js, RunEvent(run_id="early.1", seq=seq, type=kind))
    # A run whose id extends ours with a dot matches our subject filter: it must not leak in.
    await publish_event(js, RunEvent(run_id="early.1.x", seq=0, type="failed"))
    try:
        async with RunEvents(js, "early.1", nats_settings) as events:
            await publish_event(js, RunEvent(run_id="early.1", seq=3, type="succeeded"))
            got = await collect(events, 4, within_s=5)
            assert await events.next(timeout=0.3) is None
    finally:
        await nc.close()
    assert [(e.seq, e.type) for e in got] == [
        (0, "requested"),
        (1, "planned"),
        (2, "step_ready"),
        (3, "succeeded"),
    ]


async def test_started_attempts_are_the_highest_started_attempt_of_each_step(
    nats_settings: Settings,
) -> None:
    nc = await connect(nats_settings, name="test-started")
    js = nc.jetstream()
    await provision(js, nats_settings)
    started = [("a", 1), ("b", 1), ("a", 2), ("a", 2)]  # a redelivered attempt: twice
    for seq, (step, attempt) in enumerate(started):
        event = RunEvent(
            run_id="held.1", seq=seq, type="step_started", step_id=step, attempt=attempt
        )
        await publish_event(js, event)
    await publish_event(
        js, RunEvent(run_id="held.1", seq=4, type="step_ready", step_id="c", attempt=1)
    )
    # Neither another run's event (even one whose id extends this one) nor a bad message counts.
    await publish_event(
        js, RunEvent(run_id="held.1.x", seq=0, type="step_started", step_id="d", attempt=1)
    )
    await js.publish(names.events_subject("held.1", "step_started"), b"not an event")
    try:
        assert await started_attempts(js, "held.1") == {"a": 2, "b": 1}
        assert await started_attempts(js, "held.1.x") == {"d": 1}
        assert await started_attempts(js, "never-ran") == {}
    finally:
        await nc.close()


async def test_a_client_creates_the_events_stream_when_no_coordinator_did(
    tmp_path: Path,
) -> None:
    with EmbeddedNats(store_dir=tmp_path / "js") as server:
        settings = Settings(nats_url=server.url)
        nc = await connect(settings, name="test-follow")
        try:
            async with RunEvents(nc.jetstream(), "lonely", settings):
                info = await nc.jetstream().stream_info(names.EVENTS_STREAM)
        finally:
            await nc.close()
    assert info.config.subjects == [names.EVENTS_SUBJECTS]


async def test_a_follower_resumes_after_a_nats_server_restart_without_losing_events(
    tmp_path: Path,
) -> None:
    with EmbeddedNats(store_dir=tmp_path / "js") as server:
        settings = Settings(nats_url=server.url)
        reader = await connect(settings, name="reader")
        writer = await connect(settings, name="writer")
        js = writer.jetstream()
        await provision(js, settings)
        try:
            async with RunEvents(reader.jetstream(), "restarted", settings) as events:
                await publish_event(js, RunEvent(run_id="restarted", seq=0, type="planned"))
                assert [e.seq for e in await collect(events, 1, within_s=5)] == [0]
                await asyncio.to_thread(server.restart)
                await wait_until(lambda: writer.is_connected, within_s=10)
                for seq, kind in ((1, "step_ready"), (2, "succeeded")):
                    await publish_event(js, RunEvent(run_id="restarted", seq=seq, type=kind))
                after = await collect(events, 2, within_s=15)
        finally:
            await reader.close()
            await writer.close()
    assert [(e.seq, e.type) for e in after] == [(1, "step_ready"), (2, "succeeded")]


async def wait_until(condition, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_submitting_with_no_coordinator_listening_says_so(nats_settings: Settings) -> None:
    nc = await connect(nats_settings, name="test-submit")
    try:
        with pytest.raises(BusError, match=r"no coordinator answers on agentic\.runs\.submit"):
            await submit_run(nc, RunRequest(workflow_ref="demo"), max_bytes=10_000, timeout=2)
    finally:
        await nc.close()


async def _coordinator_losing_first_requests(nc, lost: int) -> list[bytes]:
    """A stand-in coordinator on the submit subject that drops its first ``lost`` requests
    (as if they went down with a NATS node) and answers the rest."""
    seen: list[bytes] = []

    async def answer(msg) -> None:
        seen.append(msg.data)
        if len(seen) > lost:
            run_id = json.loads(msg.data).get("run_id") or "chosen-1"
            await msg.respond(json.dumps({"run_id": run_id}).encode())

    await nc.subscribe(names.SUBMIT_SUBJECT, cb=answer)
    await nc.flush()
    return seen


async def test_a_submit_naming_its_run_is_sent_again_when_the_first_is_lost(
    nats_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agentic.bus.requests.TRY_TIMEOUT_S", 0.5)
    nc = await connect(nats_settings, name="test-submit-retry")
    try:
        seen = await _coordinator_losing_first_requests(nc, lost=1)
        request = RunRequest(run_id="retried-1", workflow_ref="demo")
        reply = await submit_run(nc, request, max_bytes=10_000, timeout=5)
    finally:
        await nc.close()
    assert reply.run_id == "retried-1"
    assert len(seen) == 2 and seen[0] == seen[1]


async def test_a_submit_without_a_run_id_is_never_sent_twice(
    nats_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("agentic.bus.requests.TRY_TIMEOUT_S", 0.5)
    nc = await connect(nats_settings, name="test-submit-once")
    try:
        seen = await _coordinator_losing_first_requests(nc, lost=1)
        with pytest.raises(BusError, match=r"no reply on agentic\.runs\.submit within 2s"):
            await submit_run(nc, RunRequest(workflow_ref="demo"), max_bytes=10_000, timeout=2)
    finally:
        await nc.close()
    assert len(seen) == 1


async def test_an_oversized_request_is_refused_before_it_is_sent(nats_settings: Settings) -> None:
    nc = await connect(nats_settings, name="test-submit")
    request = RunRequest(workflow_ref="demo", inputs={"topic": "x" * 5000})
    try:
        with pytest.raises(MessageTooLargeError, match="over the limit of 1000 bytes"):
            await submit_run(nc, request, max_bytes=1000)
    finally:
        await nc.close()


async def test_a_cancel_request_sends_the_run_id_and_returns_the_coordinators_answer(
    nats_settings: Settings,
) -> None:
    nc = await connect(nats_settings, name="test-cancel")
    seen: list[dict[str, str]] = []

    async def answer(msg) -> None:
        seen.append(json.loads(msg.data))
        await msg.respond(b'{"error": "unknown run \'r9\'", "code": "unknown_run"}')

    sub = await nc.subscribe(names.CANCEL_SUBJECT, cb=answer)
    try:
        reply = await cancel_run(nc, "r9", timeout=5)
    finally:
        await sub.unsubscribe()
        await nc.close()
    assert seen == [{"run_id": "r9"}]
    assert reply.unknown_run and not reply.ok


async def test_a_run_the_coordinator_refuses_is_recorded_failed_with_its_reason(
    nats_settings: Settings, tmp_path: Path
) -> None:
    from agentic.backends.nats import NatsBackend
    from agentic.contracts import RunRecord
    from agentic.store import open_store

    nc = await connect(nats_settings, name="test-refusing-coordinator")

    async def refuse(msg) -> None:
        await msg.respond(b'{"error": "this coordinator cannot run workflow \'flow\'"}')

    sub = await nc.subscribe(names.SUBMIT_SUBJECT, cb=refuse)
    store = open_store(str(tmp_path / "store"))
    record = RunRecord(run_id="refused-1", request=RunRequest(workflow_ref="flow"), backend="nats")
    assert store.create_run(record)
    events: list[RunEvent] = []
    try:
        final = await asyncio.to_thread(
            NatsBackend(submit_timeout_s=5).run, record, store, nats_settings, events.append
        )
    finally:
        await sub.unsubscribe()
        await nc.close()
    assert final.status == "failed" and events == []
    assert (
        final.error
        == "the coordinator refused the run: this coordinator cannot run workflow 'flow'"
    )
    assert store.read_run("refused-1").status == "failed"
