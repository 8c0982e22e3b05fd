"""Steps out of deliveries: from the max-deliveries advisory to a dead letter and a failed run.

JetStream stops delivering a step message after ``max_deliver`` attempts and publishes an
advisory (kept in ``AGENTIC_ADVISORIES``); the message itself stays in ``AGENTIC_STEPS``.
The coordinator then, in this order:

1. reads the message and, if a coordinator signed it, fails its step with a clear error
   (recorded in the store, which fails the run); a message nobody trusted signed fails no run;
2. copies it to ``agentic.dlq.<pool>`` and deletes it from the work stream
   (:func:`agentic.bus.dead_letter`).

Failing first makes a crash between the two harmless: the advisory is not acknowledged, so
it comes back, the step is already failed, and the move happens then.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.msg import Msg
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from agentic import names
from agentic.bus import dead_letter, parse_max_deliveries
from agentic.bus.dlq import TERMINATED_TYPE, advisory_type, parse_terminated, record_refusal
from agentic.bus.signing import SignatureError
from agentic.contracts import StepSpec, decode
from agentic.errors import BusError, DecodeError, UnsafeIdError
from services.lifecycle import persist

if TYPE_CHECKING:
    from services.coordinator.control import Control

log = logging.getLogger(__name__)


def dead_letter_message(spec: StepSpec, deliveries: int) -> str:
    """Why a step that exhausted its deliveries failed (also the dead letter's reason)."""
    return (
        f"step {spec.step_id!r} of run {spec.run_id!r} exhausted {deliveries} deliveries: its "
        "worker crashed or was killed every time; message moved to the dead-letter queue "
        f"({names.dlq_subject(spec.pool)})"
    )


async def handle_advisory(msg: Msg, control: Control) -> bool:
    """Handle one stored advisory; True when it may be acknowledged."""
    if advisory_type(msg.data) == TERMINATED_TYPE:
        return await handle_refusal(msg, control)
    try:
        advisory = parse_max_deliveries(msg.data)
    except DecodeError as exc:
        log.warning("skipping an advisory: %s", exc)
        return True
    if advisory.stream != names.STEPS_STREAM:
        return True
    js = control.js
    try:
        original = await js.get_msg(names.STEPS_STREAM, advisory.stream_seq)
    except NotFoundError:
        return True  # acknowledged after all, or already moved
    except nats.errors.Error as exc:
        log.warning("reading dead step message %d failed: %s", advisory.stream_seq, exc)
        return False
    reason = await _fail_dispatched(original, advisory.deliveries, control)
    try:
        moved = await persist(
            f"moving step message {advisory.stream_seq} to the DLQ",
            lambda: dead_letter(
                js, advisory.stream_seq, reason=reason, deliveries=advisory.deliveries
            ),
            stopping=control.deps.stopping,
        )
    except BusError as exc:
        log.warning("%s", exc)
        return False
    if moved is not None:
        log.warning("dead letter %s: %s", names.dlq_subject(moved.pool), reason)
        control.deps.metrics.dead_letter(moved.pool, "max_deliveries")
    return True


async def _fail_dispatched(original: RawStreamMsg, deliveries: int, control: Control) -> str:
    """Fail the step of a message out of deliveries, if a coordinator signed it; the reason
    its dead letter gives."""
    reason = f"exhausted {deliveries} deliveries"
    try:
        await asyncio.to_thread(control.verifier.verify, original.data or b"", original.headers)
        spec = decode(StepSpec, original.data or b"")
    except SignatureError as exc:  # not a message of ours: it fails no run
        reason += f"; not a coordinator's step ({exc})"
        log.error("step message %s out of deliveries: %s", original.seq, reason)
        return reason
    except DecodeError as exc:
        log.error("step message %s out of deliveries is not a StepSpec: %s", original.seq, exc)
        return reason
    return await control.dead_letter(spec, deliveries)


async def handle_refusal(msg: Msg, control: Control) -> bool:
    """A step message was terminated: when a worker refused it, fail its step (if it is one
    this coordinator dispatched) and record a dead letter. True when it may be acknowledged.

    Other terminations (a step of a cancelled run dropped unrun) need nothing.
    """
    try:
        refused = parse_terminated(msg.data)
    except DecodeError as exc:
        log.warning("skipping an advisory: %s", exc)
        return True
    if refused.stream != names.STEPS_STREAM or not refused.reason.startswith(names.REFUSED_PREFIX):
        return True
    reason = refused.reason.removeprefix(names.REFUSED_PREFIX)
    ours = await control.on_refused(refused.stream_seq, reason)
    detail = (
        "its step failed with this reason"
        if ours
        else "not a step this coordinator dispatched (forged, or from before a restart)"
    )
    try:
        await persist(
            f"recording refused step message {refused.stream_seq}",
            lambda: record_refusal(control.js, refused, detail=detail),
            stopping=control.deps.stopping,
        )
    except (BusError, UnsafeIdError) as exc:
        log.warning("refused step message %d not recorded: %s", refused.stream_seq, exc)
        return not isinstance(exc, BusError)
    log.warning("a worker refused step message %d: %s (%s)", refused.stream_seq, reason, detail)
    control.deps.metrics.dead_letter(refused.consumer.removeprefix("workers-"), "refused")
    return True
