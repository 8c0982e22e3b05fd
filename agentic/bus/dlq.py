"""Dead letters: step messages that exhausted ``max_deliver``.

After the last delivery JetStream leaves the message in ``AGENTIC_STEPS`` and only publishes
an advisory on ``$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`` (DESIGN §10).
The coordinator subscribes to it and calls :func:`dead_letter`, which copies the message to
``agentic.dlq.<pool>`` and then deletes it from the work stream. Publishing before deleting
makes the move safe to repeat after a crash: the copy carries ``Nats-Msg-Id =
dlq.<stream>.<seq>``, so a second move within the duplicate window stores nothing new.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from agentic import names
from agentic.errors import BusError, DecodeError

MAX_DELIVERIES_TYPE = "io.nats.jetstream.advisory.v1.max_deliver"
TERMINATED_TYPE = "io.nats.jetstream.advisory.v1.terminated"


@dataclass(frozen=True)
class MaxDeliveries:
    """A max-deliveries advisory: which message ran out of deliveries."""

    stream: str
    consumer: str
    stream_seq: int
    deliveries: int


@dataclass(frozen=True)
class Terminated:
    """A terminated-message advisory: a consumer's message was ended with ``+TERM <reason>``
    (JetStream removes it from a work-queue stream)."""

    stream: str
    consumer: str
    stream_seq: int
    deliveries: int
    reason: str


@dataclass(frozen=True)
class DeadLetter:
    """A step message moved to ``AGENTIC_DLQ``."""

    subject: str
    pool: str
    stream_seq: int
    data: bytes
    dlq_seq: int


def parse_max_deliveries(raw: bytes) -> MaxDeliveries:
    """Decode a max-deliveries advisory.

    Raises:
        DecodeError: not a max-deliveries advisory (carries the bytes).
    """
    with _advisory(raw, MAX_DELIVERIES_TYPE, "max-deliveries") as doc:
        return MaxDeliveries(**_message_fields(doc, doc["deliveries"]))


@contextlib.contextmanager
def _advisory(raw: bytes, kind: str, what: str) -> Iterator[dict[str, Any]]:
    """The JSON document of an advisory of ``kind``; a missing or malformed field read in
    the block is a :class:`DecodeError` too."""
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("type") != kind:
            found = doc.get("type") if isinstance(doc, dict) else type(doc).__name__
            raise ValueError(f"type is {found!r}, not {kind!r}")
        yield doc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DecodeError(f"invalid {what} advisory: {exc}", raw=raw, cause=exc) from exc


def _message_fields(doc: dict[str, Any], deliveries: Any) -> dict[str, Any]:
    """Which message of which consumer an advisory is about, and its deliveries so far."""
    return {
        "stream": str(doc["stream"]),
        "consumer": str(doc["consumer"]),
        "stream_seq": int(doc["stream_seq"]),
        "deliveries": int(deliveries),
    }


def advisory_type(raw: bytes) -> str | None:
    """The ``type`` of a JetStream advisory, or None when ``raw`` is not one."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    kind = doc.get("type") if isinstance(doc, dict) else None
    return kind if isinstance(kind, str) else None


def parse_terminated(raw: bytes) -> Terminated:
    """Decode a terminated-message advisory.

    Raises:
        DecodeError: not a terminated-message advisory (carries the bytes).
    """
    with _advisory(raw, TERMINATED_TYPE, "terminated") as doc:
        fields = _message_fields(doc, doc.get("deliveries", 1))
        return Terminated(**fields, reason=str(doc.get("reason") or ""))


async def record_refusal(js: JetStreamContext, refused: Terminated, *, detail: str) -> int:
    """Put a dead letter for a step message a worker refused (and so removed) on
    ``agentic.dlq.<pool>``: headers as for :func:`dead_letter`, a JSON body saying what was
    refused. Idempotent within the duplicate window (``Nats-Msg-Id``).

    Returns:
        The dead letter's sequence in ``AGENTIC_DLQ``.

    Raises:
        BusError: JetStream failed; calling again later is safe.
    """
    pool = refused.consumer.removeprefix("workers-")
    subject = names.steps_subject(pool)
    headers = {
        names.MSG_ID_HEADER: names.dlq_msg_id(refused.stream, refused.stream_seq),
        names.DLQ_SUBJECT_HEADER: subject,
        names.DLQ_STREAM_SEQ_HEADER: str(refused.stream_seq),
        names.DLQ_DELIVERIES_HEADER: str(refused.deliveries),
        names.DLQ_REASON_HEADER: refused.reason,
    }
    body = {
        "refused": True,
        "subject": subject,
        "stream_seq": refused.stream_seq,
        "consumer": refused.consumer,
        "reason": refused.reason,
        "detail": detail,
    }
    try:
        ack = await js.publish(names.dlq_subject(pool), json.dumps(body).encode(), headers=headers)
    except (APIError, nats.errors.Error) as exc:
        raise BusError(f"recording refused message {refused.stream_seq} failed: {exc}") from exc
    return ack.seq


async def dead_letter(
    js: JetStreamContext,
    stream_seq: int,
    *,
    reason: str,
    deliveries: int | None = None,
    stream: str = names.STEPS_STREAM,
) -> DeadLetter | None:
    """Move message ``stream_seq`` of the work stream to ``agentic.dlq.<pool>``.

    Args:
        js: a JetStream context.
        stream_seq: the message's sequence in ``stream`` (from the advisory).
        reason: why, stored in the dead letter's headers for operators.
        deliveries: how often it was delivered (from the advisory), stored likewise.
        stream: the work stream.

    Returns:
        The dead letter, or None when the message is no longer in the stream (already moved,
        or acked after all).

    Raises:
        BusError: JetStream failed; calling again later is safe.
    """
    try:
        original = await js.get_msg(stream, stream_seq)
    except NotFoundError:
        return None
    except (APIError, nats.errors.Error) as exc:
        raise BusError(f"reading {stream} message {stream_seq} failed: {exc}", cause=exc) from exc
    subject = original.subject or ""
    pool = names.pool_from_steps_subject(subject)
    data = original.data or b""
    headers = {
        names.MSG_ID_HEADER: names.dlq_msg_id(stream, stream_seq),
        names.DLQ_SUBJECT_HEADER: subject,
        names.DLQ_STREAM_SEQ_HEADER: str(stream_seq),
        names.DLQ_REASON_HEADER: reason,
    }
    if deliveries is not None:
        headers[names.DLQ_DELIVERIES_HEADER] = str(deliveries)
    try:
        ack = await js.publish(names.dlq_subject(pool), data, headers=headers)
        await js.delete_msg(stream, stream_seq)
    except NotFoundError:
        return None  # another coordinator deleted it between our read and delete
    except (APIError, nats.errors.Error) as exc:
        raise BusError(
            f"moving {stream} message {stream_seq} to the DLQ failed: {exc}", cause=exc
        ) from exc
    return DeadLetter(subject=subject, pool=pool, stream_seq=stream_seq, data=data, dlq_seq=ack.seq)
