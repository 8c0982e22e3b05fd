"""Publishing a run's events with a gapless per-run ``seq``, whoever publishes them.

The coordinator and the workers both publish events of one run (workers report
``step_started`` / ``step_succeeded`` / ``step_failed`` themselves). ``RunEvent.seq`` is the
event's position in the run's timeline: 0 for the first event of the run, then 1, 2, … in
the order AGENTIC_EVENTS stores them, with no gaps and no repeats, across processes and
restarts.

No process owns a counter. A publisher reads the last event of ``agentic.events.<run_id>.*``
(its ``seq`` and stream sequence), publishes ``seq + 1`` with JetStream's optimistic
concurrency headers (``Nats-Expected-Last-Subject-Sequence`` with the
``…-Subject`` filter of the run), and when another process stored an event in between (the
server answers "wrong last sequence") it reads again and retries. Each publisher caches the
last event it saw per run, so the read is only needed after a conflict or a cold start.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from agentic import names, redact
from agentic.contracts import EventType, RunEvent, encode
from agentic.errors import BusError, MessageTooLargeError

log = logging.getLogger(__name__)

# JetStream's error code when the expected last sequence does not match.
WRONG_LAST_SEQUENCE = 10071
# Conflicts in a row before giving up: each means another process published in between.
MAX_CONFLICTS = 50
# Runs whose last event is cached (least recently used ones are forgotten first).
CACHE_SIZE = 10_000


class RunTimeline:
    """Publishes run events with gapless per-run ``seq`` numbers.

    Args:
        js: A JetStream context.
        publisher: Who publishes (``coordinator``, ``worker``); sent as a header so that
            consumers can skip their own events.
        max_bytes: Largest encoded event (``settings.max_message_bytes``).
    """

    def __init__(self, js: JetStreamContext, *, publisher: str, max_bytes: int) -> None:
        self._js = js
        self._publisher = publisher
        self._max_bytes = max_bytes
        # run_id -> (seq of its last event, stream sequence of that event)
        self._last: OrderedDict[str, tuple[int, int]] = OrderedDict()

    async def publish(
        self,
        run_id: str,
        event_type: EventType,
        *,
        step_id: str | None = None,
        attempt: int | None = None,
        data: dict[str, Any] | None = None,
        msg_id: str | None = None,
    ) -> RunEvent | None:
        """Publish the run's next event.

        Args:
            run_id: The run.
            event_type: The event type.
            step_id: The step the event is about.
            attempt: The attempt the event is about.
            data: The payload.
            msg_id: A ``Nats-Msg-Id``: an event with the same id within the stream's
                duplicate window is not stored twice.

        Returns:
            The stored event, or None when JetStream dropped it as a duplicate of ``msg_id``.

        Raises:
            MessageTooLargeError: the encoded event is over ``max_bytes``.
            BusError: JetStream failed (the caller may retry), or too many conflicts.
        """
        for _ in range(MAX_CONFLICTS):
            last_seq, last_stream_seq = await self._last_event(run_id)
            event = RunEvent(
                run_id=run_id,
                seq=last_seq + 1,
                type=event_type,
                step_id=step_id,
                attempt=attempt,
                data=data or {},
            )
            payload = self._checked(event)
            headers = {
                names.PUBLISHER_HEADER: self._publisher,
                names.EXPECTED_LAST_SUBJECT_SEQ_HEADER: str(last_stream_seq),
                names.EXPECTED_LAST_SUBJECT_SEQ_SUBJECT_HEADER: names.run_timeline_filter(run_id),
            }
            if msg_id is not None:
                headers[names.MSG_ID_HEADER] = msg_id
            subject = names.events_subject(run_id, event_type)
            try:
                ack = await self._js.publish(subject, payload, headers=headers)
            except APIError as exc:
                if exc.err_code != WRONG_LAST_SEQUENCE:
                    raise _bus_error(subject, exc, run_id) from exc
                self._last.pop(run_id, None)  # someone else published: read again
                continue
            except nats.errors.Error as exc:
                raise _bus_error(subject, exc, run_id) from exc
            if ack.duplicate:
                self._last.pop(run_id, None)
                return None
            self._remember(run_id, event.seq, ack.seq)
            return event
        raise BusError(
            f"publishing an event of run {run_id!r}: {MAX_CONFLICTS} conflicting publishers "
            "in a row",
            run_id=run_id,
        )

    def observe(self, event: RunEvent, stream_seq: int) -> None:
        """Learn from an event read from the stream, sparing a read before the next publish."""
        cached = self._last.get(event.run_id)
        if cached is None or stream_seq > cached[1]:
            self._remember(event.run_id, event.seq, stream_seq)

    async def prime(self, run_id: str) -> None:
        """Know the run's last event, so that the next :meth:`publish` sends its message
        without first waiting for a read (a no-op when it is cached).

        Raises:
            BusError: JetStream failed (the caller may retry).
        """
        await self._last_event(run_id)

    def forget(self, run_id: str) -> None:
        """Drop what is cached about ``run_id`` (its run finished)."""
        self._last.pop(run_id, None)

    async def _last_event(self, run_id: str) -> tuple[int, int]:
        cached = self._last.get(run_id)
        if cached is not None:
            self._last.move_to_end(run_id)
            return cached
        try:
            msg = await self._js.get_last_msg(
                names.EVENTS_STREAM, names.run_timeline_filter(run_id)
            )
        except NotFoundError:
            return -1, 0
        except (APIError, nats.errors.Error) as exc:
            raise BusError(
                f"reading the last event of run {run_id!r} failed: {exc}", run_id=run_id, cause=exc
            ) from exc
        try:
            seq = RunEvent.model_validate_json(msg.data or b"").seq
        except ValueError as exc:
            # Not one of ours; its stream sequence still orders what follows it.
            log.warning("the last event of run %s is not a RunEvent: %s", run_id, exc)
            seq = msg.seq or 0
        self._remember(run_id, seq, msg.seq or 0)
        return seq, msg.seq or 0

    def _remember(self, run_id: str, seq: int, stream_seq: int) -> None:
        self._last[run_id] = (seq, stream_seq)
        self._last.move_to_end(run_id)
        while len(self._last) > CACHE_SIZE:
            self._last.popitem(last=False)

    def _checked(self, event: RunEvent) -> bytes:
        payload = redact.current().bytes(encode(event))
        if len(payload) > self._max_bytes:
            raise MessageTooLargeError(
                f"event {event.type} of run {event.run_id!r} is {len(payload)} bytes, over the "
                f"limit of {self._max_bytes} bytes (AGENTIC_MAX_MESSAGE_BYTES)",
                size=len(payload),
                limit=self._max_bytes,
                run_id=event.run_id,
                step_id=event.step_id,
            )
        return payload


def _bus_error(subject: str, exc: Exception, run_id: str) -> BusError:
    return BusError(
        f"publishing to {subject} failed: {type(exc).__name__}: {exc}", run_id=run_id, cause=exc
    )
