"""The bus against a real nats-server: provisioning, step messages, the work queue, the DLQ."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from agentic import names
from agentic.bus import (
    EmbeddedNats,
    connect,
    dead_letter,
    decode_event,
    decode_spec,
    delivery_count,
    fetch_one,
    keep_in_progress,
    parse_max_deliveries,
    provision,
    publish_event,
    publish_step,
    pull_steps,
    stream_configs,
)
from agentic.contracts import RunEvent, StepSpec
from agentic.errors import BusError, ConfigError, DecodeError, MessageTooLargeError
from agentic.settings import Settings
from tests.factories import bus_spec

pytestmark = [pytest.mark.nats, pytest.mark.procs]

_pools = itertools.count(1)


def new_pool() -> str:
    """A pool of its own per test: its consumer sees only that test's messages."""
    return f"pool{next(_pools)}"


async def consumer_state(js: JetStreamContext, pool: str) -> tuple[int, int]:
    """(messages waiting, messages delivered and not acked) of a pool's consumer."""
    info = await js.consumer_info(names.STEPS_STREAM, names.workers_consumer(pool))
    return info.num_pending or 0, info.num_ack_pending or 0


# --- provisioning ----------------------------------------------------------------------------


async def test_provisioning_twice_keeps_the_configured_streams_and_consumer(
    js: JetStreamContext, nats_url: str
) -> None:
    pool = new_pool()
    settings = Settings(nats_url=nats_url, step_ack_wait_s=45, step_max_deliver=4)
    await provision(js, settings, pools=[pool])
    again = await provision(js, settings, pools=[pool])

    steps = again.streams[names.STEPS_STREAM].config
    assert steps.retention == "workqueue"
    assert steps.subjects == [names.STEPS_SUBJECTS]
    assert steps.duplicate_window >= 120
    events = again.streams[names.EVENTS_STREAM].config
    assert events.retention == "limits"
    assert events.max_age == settings.events_max_age_s
    assert again.streams[names.DLQ_STREAM].config.subjects == [names.DLQ_SUBJECTS]
    consumer = again.consumers[names.workers_consumer(pool)].config
    assert consumer.filter_subject == names.steps_subject(pool)
    assert (consumer.ack_wait, consumer.max_deliver) == (45, 4)
    assert consumer.max_ack_pending == settings.step_max_ack_pending
    assert not consumer.backoff
    assert names.workers_consumer(settings.default_pool) in again.consumers


async def test_provisioning_from_several_connections_at_once_succeeds(tmp_path) -> None:
    async with EmbeddedNats(store_dir=tmp_path) as server:
        settings = Settings(nats_url=server.url)
        clients = [await connect(settings, name=f"provisioner-{i}") for i in range(4)]
        try:
            results = await asyncio.gather(
                *(provision(nc.jetstream(), settings, pools=["gpu"]) for nc in clients)
            )
            streams = await clients[0].jetstream().streams_info()
        finally:
            for nc in clients:
                await nc.close()
    assert {s.config.name for s in streams} == {
        names.EVENTS_STREAM,
        names.STEPS_STREAM,
        names.DLQ_STREAM,
    }
    assert all(names.workers_consumer("gpu") in r.consumers for r in results)


async def test_provisioning_applies_changed_settings_to_existing_streams_and_consumers(
    js: JetStreamContext, nats_url: str
) -> None:
    pool = new_pool()
    await provision(js, Settings(nats_url=nats_url, step_ack_wait_s=30), pools=[pool])
    changed = Settings(nats_url=nats_url, step_ack_wait_s=90, events_max_age_s=3600)
    try:
        result = await provision(js, changed, pools=[pool])
        assert result.streams[names.EVENTS_STREAM].config.max_age == 3600
        assert result.consumers[names.workers_consumer(pool)].config.ack_wait == 90
    finally:
        await provision(js, Settings(nats_url=nats_url), pools=[pool])


MIB = 1_048_576


async def test_byte_limits_reach_the_streams_and_change_in_place_keeping_their_messages(
    js: JetStreamContext, nats_url: str
) -> None:
    pool = new_pool()
    small = Settings(
        nats_url=nats_url, events_max_bytes=8 * MIB, steps_max_bytes=4 * MIB, dlq_max_bytes=2 * MIB
    )
    await provision(js, small, pools=[pool])
    try:
        steps = (await js.stream_info(names.STEPS_STREAM)).config
        assert (steps.max_bytes, steps.discard) == (4 * MIB, "new")
        events = (await js.stream_info(names.EVENTS_STREAM)).config
        assert (events.max_bytes, events.discard) == (8 * MIB, "old")
        assert (await js.stream_info(names.DLQ_STREAM)).config.max_bytes == 2 * MIB
        await publish_step(js, bus_spec(pool))
        event = await publish_event(js, RunEvent(run_id=f"run-{pool}", seq=0, type="planned"))

        changed = Settings(
            nats_url=nats_url, events_max_bytes=16 * MIB, steps_max_bytes=0, dlq_max_bytes=3 * MIB
        )
        again = await provision(js, changed, pools=[pool])

        limits = {name: (i.config.max_bytes, i.config.discard) for name, i in again.streams.items()}
        assert limits == {
            names.EVENTS_STREAM: (16 * MIB, "old"),
            names.STEPS_STREAM: (-1, "new"),
            names.DLQ_STREAM: (3 * MIB, "old"),
        }
        assert await consumer_state(js, pool) == (1, 0)  # the queued step is still there
        assert (await js.get_msg(names.EVENTS_STREAM, event.seq)).subject == event_subject(pool)
    finally:
        await provision(js, Settings(nats_url=nats_url), pools=[pool])


def event_subject(pool: str) -> str:
    return names.events_subject(f"run-{pool}", "planned")


async def test_a_full_steps_stream_refuses_the_next_step_naming_the_setting_and_keeps_the_queue(
    tmp_path,
) -> None:
    async with EmbeddedNats(store_dir=tmp_path) as server:
        settings = Settings(nats_url=server.url, max_message_bytes=2000, steps_max_bytes=8192)
        nc = await connect(settings, name="filler")
        try:
            js = nc.jetstream()
            await provision(js, settings)
            queued = 0
            with pytest.raises(BusError) as full:
                for attempt in range(1, 20):
                    spec = bus_spec("default", attempt=attempt, text="x" * 1000)
                    await publish_step(js, spec, max_bytes=2000)
                    queued += 1
            # A limit lowered below what is queued drops nothing from the work queue.
            lowered = Settings(nats_url=server.url, max_message_bytes=2000, steps_max_bytes=6096)
            after = (await provision(js, lowered)).streams[names.STEPS_STREAM]
        finally:
            await nc.close()
    assert 1 < queued < 19
    assert full.value.retryable
    message = str(full.value)
    assert "stream AGENTIC_STEPS" in message and "maximum bytes exceeded" in message
    assert "AGENTIC_STEPS_MAX_BYTES" in message
    assert after.config.max_bytes == 6096 and after.state.messages == queued


async def test_byte_limits_the_server_cannot_reserve_are_refused_naming_the_setting(
    tmp_path,
) -> None:
    config = tmp_path / "small.conf"
    config.write_text("jetstream { max_file_store: 64MB }\n")
    async with EmbeddedNats(store_dir=tmp_path / "js", config_file=config) as server:
        nc = await connect(Settings(nats_url=server.url), name="reserver")
        try:
            with pytest.raises(BusError) as refused:
                await provision(nc.jetstream(), Settings(nats_url=server.url))
            fits = Settings(
                nats_url=server.url,
                events_max_bytes=32 * MIB,
                steps_max_bytes=16 * MIB,
                dlq_max_bytes=8 * MIB,
            )
            await provision(nc.jetstream(), fits)  # within the 64 MB: accepted
        finally:
            await nc.close()
    message = str(refused.value)
    assert "AGENTIC_EVENTS" in message and "insufficient storage" in message
    assert "AGENTIC_EVENTS_MAX_BYTES" in message and "max_file_store" in message


def test_a_byte_limit_smaller_than_one_message_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="AGENTIC_STEPS_MAX_BYTES=1000 cannot hold one message"):
        stream_configs(Settings(steps_max_bytes=1000))


async def test_replicas_on_a_single_server_are_refused_naming_the_stream_and_the_setting(
    js: JetStreamContext, nats_url: str
) -> None:
    with pytest.raises(BusError) as refused:
        await provision(js, Settings(nats_url=nats_url, nats_replicas=3))

    message = str(refused.value)
    assert "AGENTIC_EVENTS" in message and "non-clustered" in message
    assert "AGENTIC_NATS_REPLICAS=N needs a cluster of at least N" in message


async def test_a_cluster_moves_every_stream_and_the_lease_from_one_replica_to_three_in_place(
    tmp_path,
) -> None:
    from agentic.bus import EmbeddedCluster
    from agentic.bus.claims import provision_claims
    from agentic.bus.coordination import provision_coordinator
    from agentic.bus.lease import lease_bucket

    with EmbeddedCluster(3, store_dir=tmp_path) as cluster:
        one = Settings(nats_url=cluster.url)
        nc = await connect(one, name="test-replicas")
        js = nc.jetstream()
        try:
            await provision(js, one)
            await provision_coordinator(js, one)
            await lease_bucket(js, 10.0, one)
            await provision_claims(js, one)
            kept = bus_spec("default")
            await publish_step(js, kept, max_bytes=65_536)
            three = Settings(nats_url=cluster.url, nats_replicas=3)

            await provision(js, three)
            await provision_coordinator(js, three)
            await lease_bucket(js, 10.0, three)
            await provision_claims(js, three)

            streams = [
                names.EVENTS_STREAM,
                names.STEPS_STREAM,
                names.DLQ_STREAM,
                names.ADVISORIES_STREAM,
                f"KV_{names.COORDINATOR_BUCKET}",
                f"KV_{names.CLAIMS_BUCKET}",
            ]
            for stream in streams:
                assert (await js.stream_info(stream)).config.num_replicas == 3, stream
            sub = await pull_steps(js, "default")
            msg = await fetch_one(sub, timeout=10)
            assert msg is not None and decode_spec(msg).run_id == kept.run_id
        finally:
            await nc.close()


async def test_a_pool_name_with_a_dot_is_refused_clearly(js: JetStreamContext) -> None:
    with pytest.raises(ConfigError, match=r"'gpu\.large'.*cannot contain '\.'"):
        await provision(js, Settings(), pools=["gpu.large"])


# --- step messages -----------------------------------------------------------------------------


async def test_a_step_published_twice_with_the_same_msg_id_is_queued_once(
    js: JetStreamContext, nats_settings: Settings
) -> None:
    pool = new_pool()
    await provision(js, nats_settings, pools=[pool])
    first = await publish_step(js, bus_spec(pool))
    second = await publish_step(js, bus_spec(pool))
    retry = await publish_step(js, bus_spec(pool, attempt=2))

    assert not first.duplicate and second.duplicate and not retry.duplicate
    assert second.seq == first.seq
    assert await consumer_state(js, pool) == (2, 0)
    msg = await fetch_one(await pull_steps(js, pool), timeout=2)
    assert msg is not None and msg.headers is not None
    assert msg.headers[names.MSG_ID_HEADER] == f"run-{pool}.research.1"
    assert decode_spec(msg) == bus_spec(pool)


async def test_an_oversized_step_is_refused_and_nothing_is_queued(
    js: JetStreamContext, nats_settings: Settings
) -> None:
    pool = new_pool()
    await provision(js, nats_settings, pools=[pool])
    with pytest.raises(MessageTooLargeError, match="over the limit of 2000 bytes") as caught:
        await publish_step(js, bus_spec(pool, text="x" * 3000), max_bytes=2000)
    assert caught.value.size > 2000 and caught.value.step_id == "research"
    assert await consumer_state(js, pool) == (0, 0)


async def test_the_steps_stream_itself_refuses_messages_over_the_limit(tmp_path) -> None:
    # A publisher that skips our size check (another client, a larger max_bytes) is
    # stopped by the stream's own max_msg_size.
    async with EmbeddedNats(store_dir=tmp_path) as server:
        settings = Settings(nats_url=server.url, max_message_bytes=2000)
        nc = await connect(settings, name="big-publisher")
        try:
            js = nc.jetstream()
            await provision(js, settings, pools=["default"])
            with pytest.raises(MessageTooLargeError, match="refused"):
                await publish_step(js, bus_spec("default", text="x" * 9000), max_bytes=10**6)
            info = await js.stream_info(names.STEPS_STREAM)
        finally:
            await nc.close()
    assert info.state.messages == 0


async def test_a_published_event_lands_on_its_run_subject_and_decodes(
    js: JetStreamContext, nats_settings: Settings
) -> None:
    await provision(js, nats_settings)
    event = RunEvent(run_id="run-7", seq=3, type="step_succeeded", step_id="write", attempt=1)
    ack = await publish_event(js, event)

    stored = await js.get_msg(names.EVENTS_STREAM, ack.seq)
    assert stored.subject == "agentic.events.run-7.step_succeeded"
    sub = await js.subscribe(names.run_events_filter("run-7"), ordered_consumer=True)
    try:
        assert decode_event(await sub.next_msg(timeout=2)) == event
    finally:
        await sub.unsubscribe()


async def test_a_malformed_step_message_raises_decode_error_with_its_bytes(
    js: JetStreamContext, nats_settings: Settings
) -> None:
    pool = new_pool()
    await provision(js, nats_settings, pools=[pool])
    await js.publish(names.steps_subject(pool), b'{"run_id": "r"}')
    msg = await fetch_one(await pull_steps(js, pool), timeout=2)
    assert msg is not None
    with pytest.raises(DecodeError, match="invalid StepSpec") as caught:
        decode_spec(msg)
    assert caught.value.raw == b'{"run_id": "r"}'
    await msg.term()


# --- the work queue ----------------------------------------------------------------------------


async def test_a_worker_fetches_one_message_at_a_time(
    js: JetStreamContext, nats_settings: Settings
) -> None:
    pool = new_pool()
    await provision(js, nats_settings, pools=[pool])
    for step in ("a", "b", "c"):
        await publish_step(js, bus_spec(pool, step_id=step))
    sub = await pull_steps(js, pool)

    msg = await fetch_one(sub, timeout=2)
    assert msg is not None and decode_spec(msg).step_id == "a"
    assert await consumer_state(js, pool) == (2, 1)
    await msg.ack_sync()
    assert await consumer_state(js, pool) == (2, 0)
    info = await js.stream_info(names.STEPS_STREAM, subjects_filter=names.steps_subject(pool))
    assert info.state.subjects == {names.steps_subject(pool): 2}  # work queue: acked is gone


async def test_fetch_one_returns_none_when_the_queue_is_empty(
    js: JetStreamContext, nats_settings: Settings
) -> None:
    pool = new_pool()
    await provision(js, nats_settings, pools=[pool])
    assert await fetch_one(await pull_steps(js, pool), timeout=0.3) is None


async def test_in_progress_acks_keep_a_long_step_from_being_redelivered(
    js: JetStreamContext, nats_url: str
) -> None:
    pool = new_pool()
    settings = Settings(nats_url=nats_url, step_ack_wait_s=2)
    await provision(js, settings, pools=[pool])
    await publish_step(js, bus_spec(pool))
    worker, other_worker = await pull_steps(js, pool), await pull_steps(js, pool)

    msg = await fetch_one(worker, timeout=2)
    assert msg is not None
    async with keep_in_progress(msg, every_s=0.5):
        stolen = await fetch_one(other_worker, timeout=3.5)  # well past the 2 s ack wait
    assert stolen is None
    await msg.ack_sync()
    info = await js.consumer_info(names.STEPS_STREAM, names.workers_consumer(pool))
    assert (info.num_ack_pending, info.num_redelivered, info.num_pending) == (0, 0, 0)


async def test_a_message_that_is_not_acked_is_redelivered_after_the_ack_wait(
    js: JetStreamContext, nats_url: str
) -> None:
    pool = new_pool()
    settings = Settings(nats_url=nats_url, step_ack_wait_s=1)
    await provision(js, settings, pools=[pool])
    await publish_step(js, bus_spec(pool))
    sub = await pull_steps(js, pool)

    crashed = await fetch_one(sub, timeout=2)  # a worker that dies without acking
    assert crashed is not None and delivery_count(crashed) == 1
    again = await fetch_one(sub, timeout=4)
    assert again is not None
    assert delivery_count(again) == 2
    assert again.metadata.sequence.stream == crashed.metadata.sequence.stream
    await again.ack_sync()


async def test_a_step_out_of_deliveries_raises_the_advisory_and_moves_to_the_dlq(
    js: JetStreamContext, nats_client, nats_url: str
) -> None:
    pool = new_pool()
    settings = Settings(nats_url=nats_url, step_max_deliver=2)
    await provision(js, settings, pools=[pool])
    advisories: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_advisory(msg) -> None:
        await advisories.put(msg.data)

    subject = names.max_deliveries_advisory(names.STEPS_STREAM, names.workers_consumer(pool))
    await nats_client.subscribe(subject, cb=on_advisory)
    ack = await publish_step(js, bus_spec(pool))
    sub = await pull_steps(js, pool)
    for _ in range(2):
        msg = await fetch_one(sub, timeout=2)
        assert msg is not None
        await msg.nak()  # without a delay JetStream redelivers at once

    # JetStream notices the exhausted message when a worker next asks for work.
    assert await fetch_one(sub, timeout=0.5) is None  # no third delivery
    advisory = parse_max_deliveries(await asyncio.wait_for(advisories.get(), timeout=5))
    assert (advisory.stream_seq, advisory.deliveries) == (ack.seq, 2)

    moved = await dead_letter(js, advisory.stream_seq, reason="worker crashed", deliveries=2)
    assert moved is not None and moved.pool == pool
    letter = await js.get_msg(names.DLQ_STREAM, moved.dlq_seq)
    assert letter.subject == names.dlq_subject(pool)
    assert letter.headers is not None
    assert letter.headers[names.DLQ_REASON_HEADER] == "worker crashed"
    assert letter.headers[names.DLQ_STREAM_SEQ_HEADER] == str(ack.seq)
    assert StepSpec.model_validate_json(letter.data or b"") == bus_spec(pool)
    with pytest.raises(NotFoundError):
        await js.get_msg(names.STEPS_STREAM, ack.seq)
    assert await dead_letter(js, advisory.stream_seq, reason="again") is None


def test_a_max_deliveries_advisory_of_another_type_is_a_decode_error() -> None:
    raw = json.dumps({"type": "io.nats.jetstream.advisory.v1.nak", "stream_seq": 3}).encode()
    with pytest.raises(DecodeError, match="max-deliveries") as caught:
        parse_max_deliveries(raw)
    assert caught.value.raw == raw


async def test_publishing_without_a_steps_stream_is_a_bus_error(tmp_path) -> None:
    async with EmbeddedNats(store_dir=tmp_path) as server:
        nc = await connect(Settings(nats_url=server.url), name="unprovisioned")
        try:
            with pytest.raises(BusError, match=r"publishing to agentic\.steps\.default failed"):
                await publish_step(nc.jetstream(), bus_spec("default"), timeout=1)
        finally:
            await nc.close()
