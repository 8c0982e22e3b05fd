"""What a worker checks before it runs a step message: nothing runs that the coordinator did
not sign, that would write elsewhere than the worker's own store, or that uses a provider
other than the worker's own catalog entries.

A refused message is ended with ``+TERM agentic refused: <reason>`` (nothing is written, no
event published): JetStream removes it from the work queue and repeats the reason in a
terminated-message advisory, from which the coordinator fails the step (if it dispatched it)
and records a dead letter. The reason never quotes the message's content.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from nats.aio.msg import Msg

from agentic import names
from agentic.bus.signing import SignatureError, Verifier, parse_keys
from agentic.catalog.trust import CatalogCache, spec_problem
from agentic.contracts import StepSpec, decode
from agentic.errors import AgenticError, DecodeError
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.store import RunStore

log = logging.getLogger(__name__)

# A reason travels in an advisory and a dead letter's header: keep it short.
MAX_REASON_CHARS = 300


class Refused(Exception):
    """A step message the worker will not run; ``reason`` says why (no message content)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StepGate:
    """Admits step messages: signed, for this worker's store, with its catalog's providers.

    Args:
        settings: ``step_trusted_keys``, ``allow_inline_providers``, ``max_message_bytes``.
        store: The worker's run store; a spec naming another is refused.
        catalog: The worker's catalog (inline providers are refused unless allowed).
        verify: Check signatures (False only for measurements: see ``WorkerService``).
    """

    def __init__(
        self, settings: Settings, store: RunStore, catalog: CatalogCache, *, verify: bool = True
    ) -> None:
        self._settings = settings
        self._store = store
        self._catalog = catalog
        configured = parse_keys(settings.step_trusted_keys)
        self.verifier: Verifier | None = (
            Verifier(configured if configured else store.signers) if verify else None
        )

    async def admit(self, msg: Msg) -> StepSpec:
        """The spec of ``msg`` if it may run here.

        Raises:
            Refused: it may not (the reason is what the dead letter will say).
        """
        data = msg.data or b""
        try:
            if self.verifier is not None:
                self.verifier.verify(data, msg.headers)
        except SignatureError as exc:
            raise Refused(str(exc)) from exc
        try:
            spec = decode(StepSpec, data, max_bytes=self._settings.max_message_bytes)
        except DecodeError as exc:
            raise Refused(f"not a valid StepSpec: {exc}") from exc
        if spec.store_url != self._store.url:
            raise Refused("the step names a run store that is not this worker's")
        if not self._settings.allow_inline_providers:
            try:
                catalog = await self._catalog.aget()
            except AgenticError as exc:  # the worker's own catalog is broken: not the step's fault
                raise Refused(f"this worker's catalog cannot be loaded: {exc}") from exc
            problem = spec_problem(spec, catalog)
            if problem is not None:
                raise Refused(problem)
        return spec


async def refuse(msg: Msg, reason: str) -> None:
    """End ``msg`` with ``+TERM`` and the reason (JetStream removes it, and tells the
    coordinator through a terminated-message advisory)."""
    reason = reason[:MAX_REASON_CHARS]
    log.error("refusing step message on %s: %s", msg.subject, reason)
    # nats-py's Msg.term() sends no reason: the reply subject takes the raw acknowledgement.
    await msg._client.publish(msg.reply, f"+TERM {names.REFUSED_PREFIX}{reason}".encode())
    msg._ackd = True
