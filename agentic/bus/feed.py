"""A durable pull consumer's messages as they arrive, without a request per message.

nats-py's ``fetch(1)`` sends a pull request for every message and waits for it, and its
batch fetch waits for a full batch once the consumer runs dry (docs/nats.md). A
:class:`PullFeed` keeps pull requests for up to ``batch`` messages outstanding and hands
each message over the moment it arrives, asking for more when half the credit is used,
as the newer NATS clients' "consume" does::

    feed = PullFeed(nc, "AGENTIC_EVENTS", "coordinator")
    await feed.start()
    while running:
        msg = await feed.next(timeout=1.0)    # None when nothing came
        ...
        await msg.ack()
    await feed.stop()

Each request expires after ``expires_s``; the server then answers with a ``408`` status
saying how many messages it did not deliver, and the feed asks again. Requests lost with
a restarted server are noticed by the silence (no message and no status for longer than a
request lives) and by the client's reconnect count. Messages a stopping feed holds but
never handed over are nak'ed, so that the next consumer gets them at once rather than
after the ack wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from agentic import names

log = logging.getLogger(__name__)

DEFAULT_BATCH = 32
DEFAULT_EXPIRES_S = 5.0
# Beyond a request's life: its 408 would have come by now unless the request was lost.
LOST_MARGIN_S = 1.0
_STATUS = "Status"
_PENDING_MESSAGES = "Nats-Pending-Messages"


class PullFeed:
    """The messages of one durable pull consumer, one at a time, as they arrive.

    Args:
        nc: A connected client.
        stream: The consumer's stream.
        durable: The durable consumer (it must exist).
        batch: Messages asked for at most at once; the feed holds no more than this many
            unhandled messages (each one's ack wait runs while it waits).
        expires_s: How long each pull request lives on the server.
    """

    def __init__(
        self,
        nc: NATS,
        stream: str,
        durable: str,
        *,
        batch: int = DEFAULT_BATCH,
        expires_s: float = DEFAULT_EXPIRES_S,
    ) -> None:
        self._nc = nc
        self._subject = names.pull_request_subject(stream, durable)
        self._batch = max(1, batch)
        self._expires_s = expires_s
        self._sub: Subscription | None = None
        self._inbox = ""
        self._arrived: deque[Msg] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._asked = 0  # messages asked for and neither delivered nor expired
        self._heard_at = 0.0  # when the server last answered (a message or a status)
        self._reconnects = 0

    async def start(self) -> None:
        """Subscribe to the feed's inbox (requests are sent by :meth:`next`)."""
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(self._inbox, cb=self._arrive)

    async def next(self, timeout: float) -> Msg | None:
        """The next message, or None when none arrives within ``timeout`` seconds.

        Raises:
            nats.errors.Error: the request could not be sent (e.g. while disconnected).
        """
        assert self._sub is not None, "PullFeed.start() first"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await self._ask()
            if not self._arrived:
                remaining = deadline - loop.time()
                if remaining <= 0 or not await self._wait(remaining):
                    self._notice_lost_requests()
                    return None
            msg = self._arrived.popleft()
            if msg.reply:  # a message of the stream (its reply subject is its ack)
                self._asked = max(0, self._asked - 1)
                return msg
            self._on_status(msg)

    async def stop(self) -> None:
        """Unsubscribe; nak what arrived but was never handed over."""
        sub, self._sub = self._sub, None
        if sub is None:
            return
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()
        while self._arrived:
            msg = self._arrived.popleft()
            if msg.reply:
                with contextlib.suppress(nats.errors.Error):
                    await msg.nak()

    async def _arrive(self, msg: Msg) -> None:
        # nats-py calls this for each message in order; the feed keeps them for next().
        self._heard_at = asyncio.get_running_loop().time()
        self._arrived.append(msg)
        if self._waiter is not None:
            _wake(self._waiter)

    async def _wait(self, timeout: float) -> bool:
        """Wait for a message to arrive (without a task per wait); False on timeout."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        return bool(self._arrived)

    async def _ask(self) -> None:
        reconnects = int(self._nc.stats.get("reconnects", 0))
        if reconnects != self._reconnects:  # requests do not outlive the connection
            self._reconnects, self._asked = reconnects, 0
        if self._asked > self._batch // 2:
            return
        request = {"batch": self._batch, "expires": int(self._expires_s * 1_000_000_000)}
        await self._nc.publish(self._subject, json.dumps(request).encode(), reply=self._inbox)
        self._asked += self._batch
        self._heard_at = max(self._heard_at, asyncio.get_running_loop().time())

    def _on_status(self, msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get(_STATUS, "")
        if status == "408":  # the request expired: what it did not deliver is not coming
            pending = headers.get(_PENDING_MESSAGES)
            self._asked = max(0, self._asked - int(pending)) if pending else 0
        elif status == "409":  # the request ended early (e.g. the consumer was deleted)
            log.warning("pull request on %s ended: %s", self._subject, dict(headers))
            self._asked = 0
        # 100 (heartbeat) and 404 (no messages, for no-wait requests) change nothing.

    def _notice_lost_requests(self) -> None:
        silent_for = asyncio.get_running_loop().time() - self._heard_at
        if self._asked and silent_for > self._expires_s + LOST_MARGIN_S:
            self._asked = 0


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
