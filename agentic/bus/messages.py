"""Publishing and decoding the messages agentic sends over JetStream.

Step work goes to ``agentic.steps.<pool>`` with ``Nats-Msg-Id = <run_id>.<step_id>.<attempt>``
so that a coordinator publishing the same attempt twice (after a crash, say) stores it once
within the stream's duplicate window. Run events go to ``agentic.events.<run_id>.<type>``.
Payloads are the canonical JSON of the contracts (:func:`agentic.contracts.encode`).
"""

from __future__ import annotations

from typing import Any

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError

from agentic import names, redact, tracing
from agentic.bus.provision import MAX_BYTES_SETTINGS
from agentic.bus.signing import Signer
from agentic.contracts import RunEvent, StepSpec, decode, encode
from agentic.errors import BusError, MessageTooLargeError
from agentic.settings import Settings

DEFAULT_MAX_MESSAGE_BYTES: int = Settings.model_fields["max_message_bytes"].default
# JetStream's error code for a message over the stream's max_msg_size.
_TOO_LARGE = 10054
# JetStream's "could not store the message": a full stream that discards new messages
# ("maximum bytes exceeded", answered as a 503), or a failing disk.
_STORE_FAILED = 10077


async def publish_step(
    js: JetStreamContext,
    spec: StepSpec,
    *,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    timeout: float | None = None,
    signer: Signer | None = None,
) -> PubAck:
    """Publish one step attempt to its pool's work queue.

    Args:
        js: a JetStream context (``nc.jetstream()``).
        spec: the step attempt; its ``pool`` picks the subject.
        max_bytes: payload limit (pass ``settings.max_message_bytes``).
        timeout: how long to wait for the stream's acknowledgement (nats-py's default if None).
        signer: signs the payload (the coordinator's key): workers run only signed steps.
            The caller's trace context goes in a ``traceparent`` header (agentic.tracing).

    Returns:
        The stream's acknowledgement; ``ack.duplicate`` is true when the same attempt was
        already stored within the duplicate window (nothing new was queued).

    Raises:
        MessageTooLargeError: the encoded spec exceeds ``max_bytes``; nothing was published.
        BusError: JetStream did not store the message (retryable). A full
            ``AGENTIC_STEPS`` refuses new steps until workers take queued ones: the message
            says so and names ``AGENTIC_STEPS_MAX_BYTES``.
    """
    payload = redact.current().bytes(encode(spec))
    _check_size(payload, max_bytes, "StepSpec", run_id=spec.run_id, step_id=spec.step_id)
    headers = {names.MSG_ID_HEADER: names.step_msg_id(spec.run_id, spec.step_id, spec.attempt)}
    if signer is not None:
        headers |= signer.headers(payload)
    # The caller's trace context, unsigned: a worker takes it only as its span's parent id.
    tracing.inject(headers)
    return await _publish(
        js,
        names.steps_subject(spec.pool),
        payload,
        headers=headers,
        timeout=timeout,
        run_id=spec.run_id,
        step_id=spec.step_id,
        stream=names.STEPS_STREAM,
    )


async def publish_event(
    js: JetStreamContext,
    event: RunEvent,
    *,
    max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    timeout: float | None = None,
) -> PubAck:
    """Publish one run event on ``agentic.events.<run_id>.<type>``.

    Raises:
        MessageTooLargeError: the encoded event exceeds ``max_bytes``; nothing was published.
        BusError: JetStream did not store the message.
    """
    payload = redact.current().bytes(encode(event))
    _check_size(payload, max_bytes, "RunEvent", run_id=event.run_id, step_id=event.step_id)
    return await _publish(
        js,
        names.events_subject(event.run_id, event.type),
        payload,
        timeout=timeout,
        run_id=event.run_id,
        step_id=event.step_id,
        stream=names.EVENTS_STREAM,
    )


def decode_spec(msg: Msg, *, max_bytes: int | None = None) -> StepSpec:
    """The :class:`StepSpec` in a step message.

    Raises:
        DecodeError: not a valid StepSpec, or larger than ``max_bytes`` (carries the bytes).
    """
    return decode(StepSpec, msg.data, max_bytes=max_bytes)


def decode_event(msg: Msg, *, max_bytes: int | None = None) -> RunEvent:
    """The :class:`RunEvent` in an events message.

    Raises:
        DecodeError: not a valid RunEvent, or larger than ``max_bytes`` (carries the bytes).
    """
    return decode(RunEvent, msg.data, max_bytes=max_bytes)


def _check_size(
    payload: bytes, max_bytes: int, what: str, *, run_id: str, step_id: str | None
) -> None:
    if len(payload) > max_bytes:
        raise MessageTooLargeError(
            f"{what} of run {run_id!r}"
            + (f" step {step_id!r}" if step_id else "")
            + f" is {len(payload)} bytes, over the limit of {max_bytes} bytes"
            " (AGENTIC_MAX_MESSAGE_BYTES)",
            size=len(payload),
            limit=max_bytes,
            run_id=run_id,
            step_id=step_id,
        )


async def _publish(
    js: JetStreamContext,
    subject: str,
    payload: bytes,
    *,
    headers: dict[str, Any] | None = None,
    timeout: float | None = None,
    run_id: str | None = None,
    step_id: str | None = None,
    stream: str,
) -> PubAck:
    try:
        return await js.publish(subject, payload, headers=headers, timeout=timeout)
    except (nats.errors.MaxPayloadError, APIError) as exc:
        if isinstance(exc, APIError) and exc.err_code == _STORE_FAILED:
            raise _not_stored(stream, subject, exc, run_id, step_id) from exc
        too_large = isinstance(exc, nats.errors.MaxPayloadError) or exc.err_code == _TOO_LARGE
        if not too_large:
            raise _bus_error(subject, exc, run_id, step_id) from exc
        raise MessageTooLargeError(
            f"the NATS server refused {len(payload)} bytes on {subject}: over its size limit",
            size=len(payload),
            run_id=run_id,
            step_id=step_id,
        ) from exc
    except nats.errors.Error as exc:
        raise _bus_error(subject, exc, run_id, step_id) from exc


def _not_stored(
    stream: str, subject: str, exc: APIError, run_id: str | None, step_id: str | None
) -> BusError:
    """A message the stream could not store: usually full (discard new), so say which
    setting sizes it. Retryable: a full work queue takes messages again as workers drain it."""
    setting = MAX_BYTES_SETTINGS.get(stream, "its max_bytes")
    return BusError(
        f"stream {stream} did not store the message on {subject}: {exc.description or exc}. "
        f"A full stream takes new messages again once consumers remove some; {setting} sets "
        "its size (applied when the coordinator next starts)",
        run_id=run_id,
        step_id=step_id,
        cause=exc,
    )


def _bus_error(subject: str, exc: Exception, run_id: str | None, step_id: str | None) -> BusError:
    return BusError(
        f"publishing to {subject} failed: {type(exc).__name__}: {exc}",
        run_id=run_id,
        step_id=step_id,
        cause=exc,
    )
