"""The worker side of the step queue: bind a pool, take one message, keep it alive.

JetStream redelivers a message whose ack wait passes, and messages fetched in a batch wait
(and expire) while the first one runs, so a worker slot fetches exactly one message and sends
in-progress acks while the agent runs (DESIGN §10)::

    sub = await pull_steps(js, "default")
    msg = await fetch_one(sub, timeout=5)
    if msg is not None:
        async with keep_in_progress(msg, every_s=heartbeat_interval(settings.step_ack_wait_s)):
            ...  # run the step
        await msg.ack()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from agentic import names

log = logging.getLogger(__name__)

PullSubscription = JetStreamContext.PullSubscription


async def pull_steps(js: JetStreamContext, pool: str) -> PullSubscription:
    """Bind to the durable ``workers-<pool>`` consumer (created by provisioning)."""
    return await js.pull_subscribe_bind(
        durable=names.workers_consumer(pool), stream=names.STEPS_STREAM
    )


async def fetch_one(sub: PullSubscription, timeout: float) -> Msg | None:
    """The next message of the consumer, or None when none arrives within ``timeout``."""
    try:
        msgs = await sub.fetch(1, timeout=timeout)
    except nats.errors.TimeoutError:
        return None
    return msgs[0] if msgs else None


def heartbeat_interval(ack_wait_s: float) -> float:
    """How often to send in-progress acks: three per ack wait survive a late beat or two."""
    return max(ack_wait_s / 3.0, 0.05)


def delivery_count(msg: Msg) -> int:
    """How many times JetStream has delivered this message (1 on the first delivery)."""
    return int(msg.metadata.num_delivered)


@contextlib.asynccontextmanager
async def keep_in_progress(msg: Msg, *, every_s: float) -> AsyncIterator[None]:
    """Send ``msg.in_progress()`` every ``every_s`` seconds while the block runs.

    A failed beat (the connection is down while the server restarts, say) is logged, not
    raised: the block keeps running and the next beat tries again.
    """
    task = asyncio.create_task(_beat(msg, every_s))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _beat(msg: Msg, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await msg.in_progress()
        except nats.errors.Error as exc:
            log.warning("in-progress ack of %s failed: %s", msg.subject, exc)
