"""Steps out of deliveries: from the max-deliveries advisory to a dead letter and a failed run.

JetStream stops delivering a step message after ``max_deliver`` attempts and publishes an
advisory (kept in ``AGENTIC_ADVISORIES``); the message itself stays in ``AGENTIC_STEPS``.
The coordinator then, in this order:

1. reads the message and fails its step with a clear error (recorded in the store, which
   fails the run);
2. copies it to ``agentic.dlq.<pool>`` and deletes it from the work stream
   (:func:`agentic.bus.dead_letter`).

Failing first makes a crash between the two harmless: the advisory is not acknowledged, so
it comes back, the step is already failed, and the move happens then.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from agentic import names
from agentic.bus import dead_letter, parse_max_deliveries
from agentic.contracts import StepSpec, decode
from agentic.errors import BusError, DecodeError
from services.lifecycle import persist

if TYPE_CHECKING:
    from services.coordinator.control import Control

log = logging.getLogger(__name__)

DEAD_LETTER_ERROR_TYPE = "DeadLettered"


def dead_letter_message(spec: StepSpec, deliveries: int) -> str:
    """Why a step that exhausted its deliveries failed (also the dead letter's reason)."""
    return (
        f"step {spec.step_id!r} of run {spec.run_id!r} exhausted {deliveries} deliveries: its "
        "worker crashed or was killed every time; message moved to the dead-letter queue "
        f"({names.dlq_subject(spec.pool)})"
    )


async def handle_advisory(msg: Msg, control: Control) -> bool:
    """Handle one stored advisory; True when it may be acknowledged."""
    try:
        advisory = parse_max_deliveries(msg.data)
    except DecodeError as exc:
        log.warning("skipping an advisory: %s", exc)
        return True
    if advisory.stream != names.STEPS_STREAM:
        return True
    js = control.deps.js
    try:
        original = await js.get_msg(names.STEPS_STREAM, advisory.stream_seq)
    except NotFoundError:
        return True  # acknowledged after all, or already moved
    except nats.errors.Error as exc:
        log.warning("reading dead step message %d failed: %s", advisory.stream_seq, exc)
        return False
    reason = f"exhausted {advisory.deliveries} deliveries"
    try:
        spec = decode(StepSpec, original.data or b"")
    except DecodeError as exc:
        log.error(
            "step message %d out of deliveries is not a StepSpec: %s", advisory.stream_seq, exc
        )
    else:
        reason = await control.dead_letter(spec, advisory.deliveries)
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
    return True
