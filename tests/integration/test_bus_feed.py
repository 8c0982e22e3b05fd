"""PullFeed against a real nats-server: messages as they arrive, few requests, no loss."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, StreamConfig

from agentic import names
from agentic.bus import EmbeddedNats, PullFeed, connect
from agentic.settings import Settings

pytestmark = [pytest.mark.nats, pytest.mark.procs]

_streams = itertools.count(1)


async def new_stream(js: JetStreamContext, *, ack_wait_s: float = 30.0) -> tuple[str, str]:
    """A stream with one durable pull consumer, both of the test's own."""
    n = next(_streams)
    stream, subject = f"FEED{n}", f"feed{n}.x"
    await js.add_stream(StreamConfig(name=stream, subjects=[subject]))
    await js.add_consumer(stream, ConsumerConfig(durable_name="c", ack_wait=ack_wait_s))
    return stream, subject


@pytest.fixture
async def feed_parts(js: JetStreamContext) -> tuple[str, str]:
    return await new_stream(js)


@contextlib.asynccontextmanager
async def started_feed(nc: NATS, stream: str, *, expires_s: float) -> AsyncIterator[PullFeed]:
    """A started PullFeed of consumer ``c`` (batch 8), stopped on leaving."""
    pulled = PullFeed(nc, stream, "c", batch=8, expires_s=expires_s)
    await pulled.start()
    try:
        yield pulled
    finally:
        await pulled.stop()


@pytest.fixture
async def feed(nats_client: NATS, feed_parts: tuple[str, str]) -> AsyncIterator[PullFeed]:
    async with started_feed(nats_client, feed_parts[0], expires_s=0.5) as pulled:
        yield pulled


async def test_a_message_is_handed_over_as_soon_as_it_is_stored(
    nats_client: NATS, js: JetStreamContext, feed_parts: tuple[str, str]
) -> None:
    stream, subject = feed_parts
    # Requests that expire after 4 s: a feed waiting for its batch of 8 to fill would hand
    # the one message over only then.
    async with started_feed(nats_client, stream, expires_s=4.0) as feed:
        waiting = asyncio.create_task(feed.next(timeout=8))
        await asyncio.sleep(0.2)  # the feed is waiting with its requests out
        sent = time.monotonic()
        await js.publish(subject, b"one")
        msg = await waiting
        assert msg is not None and msg.data == b"one"
        assert time.monotonic() - sent < 2.0  # not held back until a batch fills up


async def test_every_message_comes_in_order_with_a_request_per_several_messages(
    js: JetStreamContext, nats_client: NATS, feed_parts: tuple[str, str]
) -> None:
    stream, subject = feed_parts
    requests = await nats_client.subscribe(names.pull_request_subject(stream, "c"))
    for i in range(40):
        await js.publish(subject, str(i).encode())
    feed = PullFeed(nats_client, stream, "c", batch=8)  # requests outlive the test
    await feed.start()
    got = []
    while (msg := await feed.next(timeout=1)) is not None:
        got.append(int(msg.data))
        await msg.ack()
    await feed.stop()
    assert got == list(range(40))
    info = await js.consumer_info(stream, "c")
    assert (info.num_ack_pending, info.num_pending) == (0, 0)
    assert requests.pending_msgs <= 12  # batches of 8, asked for again at half credit


async def test_the_feed_asks_again_when_its_requests_expire(
    js: JetStreamContext, feed: PullFeed, feed_parts: tuple[str, str]
) -> None:
    _, subject = feed_parts
    for _ in range(3):  # each wait outlives the 0.5 s requests
        assert await feed.next(timeout=0.7) is None
    await js.publish(subject, b"late")
    msg = await feed.next(timeout=2)
    assert msg is not None and msg.data == b"late"


async def test_messages_a_stopped_feed_held_go_to_the_next_one_without_the_ack_wait(
    js: JetStreamContext, nats_client: NATS, feed_parts: tuple[str, str]
) -> None:
    stream, subject = feed_parts  # the consumer's ack wait is 30 s
    first = PullFeed(nats_client, stream, "c", batch=8)
    await first.start()
    for i in range(5):
        await js.publish(subject, str(i).encode())
    handled = await first.next(timeout=2)
    assert handled is not None
    await handled.ack()
    await asyncio.sleep(0.2)  # the other four have arrived, unhandled
    await first.stop()

    second = PullFeed(nats_client, stream, "c", batch=8)
    await second.start()
    try:
        got = []
        while len(got) < 4 and (msg := await second.next(timeout=3)) is not None:
            got.append(int(msg.data))
            await msg.ack()
    finally:
        await second.stop()
    assert sorted(got) == [1, 2, 3, 4]


async def test_a_feed_keeps_delivering_after_the_server_restarts(tmp_path) -> None:
    with EmbeddedNats(store_dir=tmp_path / "js") as server:
        nc = await connect(Settings(nats_url=server.url), name="feed-restart")
        try:
            stream, subject = await new_stream(nc.jetstream())
            feed = PullFeed(nc, stream, "c", batch=8, expires_s=0.5)
            await feed.start()
            assert await feed.next(timeout=0.3) is None  # its requests are out
            await asyncio.to_thread(server.restart)
            deadline = time.monotonic() + 15
            while not nc.is_connected and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            await nc.jetstream().publish(subject, b"after")
            msg = None
            while msg is None and time.monotonic() < deadline:
                msg = await feed.next(timeout=0.5)
            assert msg is not None and msg.data == b"after"
            await feed.stop()
        finally:
            await nc.close()
