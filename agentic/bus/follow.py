"""Following one run's events from ``AGENTIC_EVENTS``, from its first event on.

Events are stored in the stream, so a client that subscribes after the coordinator has
already published (or that subscribes first and submits second, as the ``nats`` backend
does) misses nothing: :class:`RunEvents` reads the run's subjects
``agentic.events.<run_id>.*`` with a JetStream *ordered consumer* delivering everything from
the start. (``.*``, not ``.>``: run ids may contain dots, and ``agentic.events.a.>`` also
matches the events of run ``a.b``.)

An ordered consumer is an ephemeral, in-memory consumer that the client recreates itself
whenever it sees a gap or stops hearing the server's idle heartbeats, starting after the last
stream sequence it delivered. That is what lets a client survive a nats-server restart: the
connection reconnects on its own, the consumer is gone with the old server process, two
missed heartbeats later it is recreated, and delivery resumes where it stopped.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Self

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from agentic import names
from agentic.bus.messages import decode_event
from agentic.bus.provision import ensure_stream, stream_configs
from agentic.contracts import RunEvent, decode
from agentic.errors import BusError, DecodeError
from agentic.settings import Settings

log = logging.getLogger(__name__)

# Two missed heartbeats make the consumer recreate itself: after a server restart, delivery
# resumes within about twice this.
DEFAULT_HEARTBEAT_S = 1.0


class RunEvents:
    """The events of one run, in order, as an async context manager.

    Example::

        async with RunEvents(js, run_id, settings) as events:
            await submit(...)                      # nothing published meanwhile is lost
            while (event := await events.next(timeout=1.0)) is not None or waiting:
                ...

    Args:
        js: a JetStream context.
        run_id: the run to follow (validated).
        settings: ``max_message_bytes`` bounds decoded events; used to create
            ``AGENTIC_EVENTS`` if no coordinator has provisioned it yet.
        heartbeat_s: the consumer's idle heartbeat.
    """

    def __init__(
        self,
        js: JetStreamContext,
        run_id: str,
        settings: Settings,
        *,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
    ) -> None:
        self.run_id = run_id
        self._subject = names.run_timeline_filter(run_id)
        self._js = js
        self._settings = settings
        self._heartbeat_s = heartbeat_s
        self._sub: JetStreamContext.PushSubscription | None = None

    async def __aenter__(self) -> Self:
        try:
            self._sub = await self._subscribe()
        except NotFoundError:
            # No coordinator has provisioned the streams yet: create the events stream (only
            # if missing, so an operator's configuration is never rewritten by a client).
            await _ensure_events_stream(self._js, self._settings)
            self._sub = await self._subscribe()
        except nats.errors.Error as exc:
            raise BusError(f"cannot follow the events of run {self.run_id!r}: {exc}") from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except nats.errors.Error as error:  # closed or reconnecting: the server cleans up
                log.debug("unsubscribing from %s: %s", self._subject, error)

    async def next(self, timeout: float) -> RunEvent | None:
        """The next event, or None when none arrives within ``timeout`` seconds.

        Messages that are not valid events are logged and skipped (one bad publisher must
        not stop a client from seeing its run finish): they return None like a timeout.
        """
        if self._sub is None:
            raise RuntimeError("RunEvents is not entered")
        try:
            msg = await self._sub.next_msg(timeout=timeout)
        except nats.errors.TimeoutError:
            return None
        try:
            return decode_event(msg, max_bytes=self._settings.max_message_bytes)
        except DecodeError as exc:
            log.warning("skipping an undecodable message on %s: %s", msg.subject, exc)
            return None

    async def _subscribe(self) -> JetStreamContext.PushSubscription:
        return await self._js.subscribe(
            self._subject,
            stream=names.EVENTS_STREAM,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
            idle_heartbeat=self._heartbeat_s,
        )


async def _ensure_events_stream(js: JetStreamContext, settings: Settings) -> None:
    try:
        await js.stream_info(names.EVENTS_STREAM)
        return
    except NotFoundError:
        pass
    config = next(c for c in stream_configs(settings) if c.name == names.EVENTS_STREAM)
    await ensure_stream(js, config, settle_s=0)


async def started_attempts(
    js: JetStreamContext, run_id: str, *, max_bytes: int | None = None
) -> dict[str, int]:
    """The highest attempt of each step of ``run_id`` that a worker reported started.

    Reads the run's stored ``step_started`` events one by one with JetStream's direct
    "next message on this subject" lookups (no consumer to create and delete): a run has
    few of them. A coordinator restoring a run uses this to tell a step that a worker holds
    (its message stays in ``AGENTIC_STEPS`` until the worker acknowledges it, and comes back
    if the worker dies) from one that must be published again. Undecodable events are
    skipped; an events stream that does not exist yet holds none.

    Raises:
        BusError: JetStream failed (the caller may retry).
    """
    subject = names.events_subject(run_id, "step_started")
    started: dict[str, int] = {}
    seq = 1
    while True:
        try:
            raw = await js.get_msg(names.EVENTS_STREAM, seq=seq, subject=subject, next=True)
        except NotFoundError:  # no more such events (or no stream)
            return started
        except nats.errors.Error as exc:
            raise BusError(f"cannot read the step_started events of run {run_id!r}: {exc}") from exc
        if raw.seq is None or raw.seq < seq:  # a server answering otherwise than asked
            raise BusError(f"JetStream answered sequence {raw.seq} for a lookup from {seq}")
        seq = raw.seq + 1
        try:
            event = decode(RunEvent, raw.data or b"", max_bytes=max_bytes)
        except DecodeError as exc:
            log.warning("skipping an undecodable message on %s: %s", subject, exc)
            continue
        if event.step_id is not None and event.attempt is not None:
            started[event.step_id] = max(started.get(event.step_id, 0), event.attempt)
