"""How the coordinator serves: its consumer loops and its replies to requests.

* :func:`consume` handles a durable consumer's messages one at a time, in order, as they
  arrive, through a :class:`~agentic.bus.PullFeed` (requests kept out: no round trip per
  message, no wait for a full batch; docs/nats.md), turning the heartbeat on each pass;
* :func:`respond` answers a request: a bad request gets an error reply (secrets masked), and
  never stops the service.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from agentic import redact
from agentic.bus import PullFeed
from agentic.errors import AgenticError, BusError
from services.health import Heartbeat
from services.lifecycle import persist

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 1.0
# Messages a consumer loop holds at most unhandled (each one's ack wait runs meanwhile).
FEED_BATCH = 32


async def consume(
    nc: NATS,
    js: JetStreamContext,
    stream: str,
    durable: str,
    handle: Callable[[Msg], Awaitable[None]],
    *,
    stopping: asyncio.Event,
    beat: Heartbeat,
) -> None:
    """Handle the consumer's messages one at a time, in order, until ``stopping``."""
    await persist(
        f"finding consumer {durable}",
        lambda: _find(js, stream, durable),
        stopping=stopping,
    )
    feed = PullFeed(nc, stream, durable, batch=FEED_BATCH)
    await feed.start()
    try:
        while not stopping.is_set():
            beat.turn(durable)
            try:
                msg = await feed.next(timeout=FETCH_TIMEOUT_S)
            except nats.errors.Error as exc:  # disconnected: nats-py reconnects on its own
                log.warning("fetching from %s failed: %s", durable, exc)
                await asyncio.sleep(FETCH_TIMEOUT_S)
                continue
            if msg is not None:
                await handle(msg)
    finally:
        beat.forget(durable)
        await feed.stop()  # what it held unhandled goes to the next coordinator at once


async def _find(js: JetStreamContext, stream: str, durable: str) -> None:
    try:
        await js.consumer_info(stream, durable)
    except (NotFoundError, nats.errors.Error) as exc:
        raise BusError(f"cannot find consumer {stream}/{durable}: {exc}", cause=exc) from exc


async def respond(msg: Msg, answer: Callable[[], Awaitable[dict[str, Any]]]) -> None:
    """Reply to a request; a bad request gets an error reply, never stops the service."""
    try:
        reply = await answer()
    except AgenticError as exc:
        reply = {"error": redact.current().text(str(exc))}
    except Exception as exc:  # any other failure is ours: log it, tell the client, keep going
        log.exception("request on %s failed", msg.subject)
        reply = {"error": redact.current().text(f"internal error: {type(exc).__name__}: {exc}")}
    if not msg.reply:
        return
    try:
        await msg.respond(json.dumps(reply).encode())
    except nats.errors.Error as exc:
        log.warning("reply on %s not sent: %s", msg.subject, exc)
