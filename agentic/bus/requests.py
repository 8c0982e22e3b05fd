"""The client side of the two requests the coordinator answers: submit and cancel.

``agentic.runs.submit`` takes a :class:`~agentic.contracts.RunRequest` and replies
``{"run_id": …}`` or ``{"error": …}``; ``agentic.control.cancel`` takes ``{"run_id": …}`` and
replies the same way (DESIGN §4). Replies are JSON objects; fields beyond these are kept in
:attr:`Reply.body` so a newer coordinator can say more without breaking older clients.

A request, or its reply, can be lost with a NATS node (the client's, or the coordinator's,
which then reconnects elsewhere and subscribes again). Both requests are idempotent when
they name the run (a second submit of a run id starts nothing new; a second cancel cancels
nothing new), so those are sent again within the caller's timeout: once a try has had
:data:`TRY_TIMEOUT_S` without an answer, and every :data:`RETRY_DELAY_S` while nobody
subscribes for up to :data:`NO_RESPONDERS_GRACE_S`. A submit without a run id is sent once:
sent twice, it could start two runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS

from agentic import names, tracing
from agentic.contracts import RunRequest, encode
from agentic.errors import BusError, MessageTooLargeError
from agentic.ids import check_id

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0
# A try of an idempotent request that has no answer after this is sent again.
TRY_TIMEOUT_S = 5.0
# "No responders" can mean a coordinator reconnecting to another node: ask again this long.
NO_RESPONDERS_GRACE_S = 3.0
RETRY_DELAY_S = 0.25
# How an error reply says the run does not exist (the coordinator's ``code``).
UNKNOWN_RUN_CODES = frozenset({"unknown_run", "UnknownRunError", "not_found"})


@dataclass(frozen=True)
class Reply:
    """A coordinator's reply: ``run_id`` on success, ``error`` (and maybe ``code``) otherwise."""

    run_id: str | None = None
    error: str | None = None
    code: str | None = None
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the coordinator accepted the request."""
        return self.error is None

    @property
    def unknown_run(self) -> bool:
        """True when the coordinator answered that it holds no such run."""
        if self.ok:
            return False
        if self.code is not None:
            return self.code in UNKNOWN_RUN_CODES
        return "unknown run" in (self.error or "").lower()


async def submit_run(
    nc: NATS, request: RunRequest, *, max_bytes: int, timeout: float = DEFAULT_TIMEOUT_S
) -> Reply:
    """Send ``request`` to ``agentic.runs.submit`` and return the coordinator's reply.

    Raises:
        MessageTooLargeError: the encoded request exceeds ``max_bytes``; nothing was sent.
        BusError: no coordinator answered (none running, or not within ``timeout``), or the
            reply is not a JSON object.
    """
    payload = encode(request)
    if len(payload) > max_bytes:
        raise MessageTooLargeError(
            f"RunRequest is {len(payload)} bytes, over the limit of {max_bytes} bytes"
            " (AGENTIC_MAX_MESSAGE_BYTES)",
            size=len(payload),
            limit=max_bytes,
            run_id=request.run_id,
        )
    idempotent = request.run_id is not None
    # The caller's trace context (its run's root span): the coordinator continues the trace.
    headers = tracing.inject({})
    return await _request(
        nc, names.SUBMIT_SUBJECT, payload, timeout, idempotent=idempotent, headers=headers
    )


async def cancel_run(nc: NATS, run_id: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> Reply:
    """Ask the coordinator to cancel ``run_id`` (on ``agentic.control.cancel``).

    Raises:
        UnsafeIdError: ``run_id`` is not a safe id.
        BusError: no coordinator answered, or the reply is not a JSON object.
    """
    payload = json.dumps({"run_id": check_id(run_id, "run id")}).encode()
    return await _request(nc, names.CANCEL_SUBJECT, payload, timeout, idempotent=True)


async def _request(
    nc: NATS,
    subject: str,
    payload: bytes,
    timeout: float,
    *,
    idempotent: bool,
    headers: dict[str, str] | None = None,
) -> Reply:
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout
    while True:
        remaining = deadline - loop.time()
        try_timeout = min(remaining, TRY_TIMEOUT_S) if idempotent else remaining
        try:
            msg = await nc.request(
                subject, payload, timeout=max(try_timeout, 0.01), headers=headers or None
            )
            return parse_reply(msg.data, subject)
        except nats.errors.NoRespondersError as exc:
            grace_over = loop.time() - started >= NO_RESPONDERS_GRACE_S
            if grace_over or deadline - loop.time() <= RETRY_DELAY_S:
                raise BusError(
                    f"no coordinator answers on {subject}: start one (`agentic coordinator`, "
                    "or `agentic up` for a local stack)",
                    cause=exc,
                ) from exc
        except nats.errors.TimeoutError as exc:
            if not idempotent or deadline - loop.time() <= RETRY_DELAY_S:
                raise BusError(f"no reply on {subject} within {timeout:g}s", cause=exc) from exc
            log.warning("no reply on %s yet; asking again", subject)
        except nats.errors.Error as exc:
            if not idempotent or deadline - loop.time() <= RETRY_DELAY_S:
                raise BusError(f"request on {subject} failed: {exc}", cause=exc) from exc
            log.warning("request on %s failed (%r); asking again", subject, exc)
        await asyncio.sleep(RETRY_DELAY_S)


def parse_reply(raw: bytes, subject: str = "the request") -> Reply:
    """A :class:`Reply` from the bytes of a coordinator's answer.

    Raises:
        BusError: not a JSON object.
    """
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BusError(f"the reply on {subject} is not JSON: {raw[:200]!r}", cause=exc) from exc
    if not isinstance(body, dict):
        raise BusError(f"the reply on {subject} is not a JSON object: {raw[:200]!r}")
    error = body.get("error")
    code = body.get("code")
    message: str | None = None if error is None else str(error)
    if isinstance(error, dict):  # {"error": {"type": …, "message": …}}
        code = error.get("code") or error.get("type")
        message = str(error.get("message") or error)
    run_id = body.get("run_id")
    return Reply(
        run_id=str(run_id) if run_id is not None else None,
        error=message,
        code=str(code) if code is not None else None,
        body=body,
    )
