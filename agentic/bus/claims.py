"""Which delivery of a step attempt may run: a claim per attempt in a JetStream KV bucket.

JetStream redelivers a step message when it believes its worker is gone: the ack wait passed
without an in-progress ack. After a NATS stall that belief can be wrong. A worker's pull
request answered on resume leaves the message in that worker's buffer while the server,
hearing no in-progress ack, delivers it again elsewhere; or a worker that was only frozen
carries on. The same attempt then runs on two workers at once.

The server numbers deliveries, and only ever hands a message out again once it gave up on
the previous delivery, so **the newest delivery of an attempt is the one that may run**.
Each worker records the delivery it runs in the bucket ``AGENTIC_CLAIMS``
(key: the pool and a digest of run, step and attempt; value: the delivery and the worker)
when it starts the step, and again with every in-progress ack:

* a worker whose delivery is older than the recorded one does not run it (a stale message
  from its buffer) or stops it at its next beat (it was overtaken while frozen); it neither
  records nor acknowledges anything: the newer delivery's worker does;
* a newer delivery takes the claim over at once (the previous worker crashed or was
  presumed dead), so a redelivery never waits for a claim to expire.

Entries expire two ack waits after their last write. The claim is written while the step
starts, not before: a fresh delivery loses no time, and an overtaken one runs at most one
in-progress interval (a third of the ack wait). Claims fail open: when the bucket cannot be
reached, the step runs as before (logged).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from agentic import names
from agentic.bus.provision import ensure_bucket, placement
from agentic.settings import Settings

log = logging.getLogger(__name__)


def claims_ttl_s(settings: Settings) -> float:
    """How long a claim outlives its last write."""
    return 2 * settings.step_ack_wait_s


async def provision_claims(js: JetStreamContext, settings: Settings) -> KeyValue:
    """Create the bucket when missing (the coordinator does, at start).

    Raises:
        BusError: JetStream refused it.
    """
    config = KeyValueConfig(
        bucket=names.CLAIMS_BUCKET,
        description="agentic: the delivery of each step attempt that may run",
        history=1,
        ttl=claims_ttl_s(settings),
        # Claims matter only while their steps run: kept in memory (replicated all the
        # same), a restarted server forgets them and the next write claims afresh.
        storage=StorageType.MEMORY,
        replicas=settings.nats_replicas,
        placement=placement(settings),
        direct=True,
    )
    return await ensure_bucket(js, config)


def claim_key(pool: str, run_id: str, step_id: str, attempt: int) -> str:
    """The key of an attempt: its pool (workers may write only their own pool's keys) and a
    digest of run, step and attempt (ids may contain dots, which separate key tokens)."""
    digest = hashlib.sha256(f"{run_id}\0{step_id}\0{attempt}".encode()).hexdigest()[:32]
    return f"{pool}.{digest}"


@dataclass
class Claim:
    """One worker's claim to run one delivery of one attempt.

    Args:
        kv: The ``AGENTIC_CLAIMS`` bucket.
        key: :func:`claim_key`.
        delivery: The delivery this worker holds (``num_delivered``).
        worker: Who holds it (for logs).
    """

    kv: KeyValue
    key: str
    delivery: int
    worker: str
    revision: int | None = None

    @property
    def _value(self) -> bytes:
        return json.dumps({"delivery": self.delivery, "worker": self.worker}).encode()

    async def take(self) -> bool:
        """Record this delivery as the one that runs; False when a newer one holds it.

        Raises:
            nats.errors.Error: the bucket could not be reached (the caller runs anyway).
        """
        # The usual case, a delivery nobody else claimed, costs one write: create first.
        try:
            self.revision = await self.kv.create(self.key, self._value)
            return True
        except KeyWrongLastSequenceError:
            pass
        for _ in range(3):  # a concurrent writer means a retry; three settle any race
            try:
                entry = await self.kv.get(self.key)
            except KeyNotFoundError:
                entry = None
            if entry is not None and _delivery_of(entry.value) > self.delivery:
                return False
            try:
                if entry is None:
                    self.revision = await self.kv.create(self.key, self._value)
                else:
                    self.revision = await self.kv.update(self.key, self._value, last=entry.revision)
                return True
            except KeyWrongLastSequenceError:
                continue
        return False

    async def keep(self) -> bool:
        """Write the claim again (with an in-progress ack); False when a newer delivery has
        taken it (stop the step: that delivery's worker runs it).

        Raises:
            nats.errors.Error: the bucket could not be reached (keep running).
        """
        if self.revision is None:
            return await self.take()
        try:
            self.revision = await self.kv.update(self.key, self._value, last=self.revision)
            return True
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await self.kv.get(self.key)
        except KeyNotFoundError:  # expired while the bus was out of reach: take it again
            return await self.take()
        if _delivery_of(entry.value) > self.delivery:
            return False
        if entry.value == self._value:  # our own write, applied after its reply was lost
            self.revision = entry.revision
            return True
        return await self.take()


def _delivery_of(value: bytes | None) -> int:
    try:
        return int(json.loads(value or b"{}").get("delivery", 0))
    except (ValueError, TypeError, AttributeError):
        return 0
