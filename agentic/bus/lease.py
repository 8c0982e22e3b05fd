"""Leadership among coordinators: a lease held in a JetStream key-value bucket.

Run several coordinators for availability; one leads (answers submits and cancels, consumes
events, drives runs), the others wait on standby. The lease is one key, ``leader``, in the
KV bucket ``AGENTIC_COORDINATOR`` whose entries expire ``ttl_s`` after their last write
(the bucket's max age). The leader rewrites it every ``ttl_s / 3`` with a compare-and-set on
its revision; a standby tries to create it every ``ttl_s / 3``, which succeeds once the
leader let it expire (crashed, stopped, or cut off from NATS) or deleted it (a clean stop).

A coordinator that finds the lease held under its own identity takes it over at once: it is
the same coordinator restarted (the identity defaults to the host name, which is the pod's
name on Kubernetes). Give every replica its own ``AGENTIC_COORDINATOR_ID`` when several run
on one host.

A leader that cannot renew (NATS unreachable for a while) keeps going as long as nobody else
took the lease: when it can write again it re-creates the key, and the revision JetStream
gives it shows whether any other coordinator wrote in between (the bucket's sequence moved
by more than its own write). If one did, :meth:`Lease.renew` reports the lease lost and the
coordinator must stop at once. A renewal whose reply was lost (NATS stalled) but that the
server applied later is recognised as the coordinator's own: the value it writes carries,
after its identity, a mark of the process, and the entry sits right after its last write.
Meanwhile :meth:`Lease.valid` turns False one lease after the last write that went through,
and the coordinator's timers wait for it (no store writes from a leader that may have been
replaced).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable
from typing import Self

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from agentic import names
from agentic.bus.provision import ensure_bucket, placement
from agentic.settings import Settings

log = logging.getLogger(__name__)

LEADER_KEY = "leader"


def holder_of(value: bytes | None) -> str:
    """The identity of the coordinator that wrote a lease value (its first line)."""
    return (value or b"").split(b"\n", 1)[0].decode(errors="replace")


async def lease_bucket(
    js: JetStreamContext, ttl_s: float, settings: Settings | None = None
) -> KeyValue:
    """The coordinators' KV bucket, created with ``ttl_s`` when missing (an existing bucket
    keeps the max age it was created with). Its replicas and placement follow
    ``settings`` (``AGENTIC_NATS_REPLICAS``, ``AGENTIC_NATS_PLACEMENT_TAGS``); an existing
    bucket with another replica count is changed in place."""
    config = KeyValueConfig(
        bucket=names.COORDINATOR_BUCKET,
        history=1,
        ttl=ttl_s,
        storage=StorageType.FILE,
        replicas=settings.nats_replicas if settings is not None else 1,
        placement=placement(settings) if settings is not None else None,
    )
    return await ensure_bucket(js, config)


class Lease:
    """One coordinator's claim to lead.

    Args:
        kv: The bucket (:func:`lease_bucket`).
        identity: This coordinator's id.
        ttl_s: How long the lease outlives its last renewal.
    """

    def __init__(self, kv: KeyValue, identity: str, ttl_s: float) -> None:
        self.identity = identity
        self.ttl_s = ttl_s
        # What this coordinator writes: its identity, then a mark of this very process, so
        # that a renewal applied late (its reply lost in a NATS stall) is told from the
        # same identity restarted elsewhere.
        self._value = f"{identity}\n{secrets.token_hex(8)}".encode()
        self._kv = kv
        self._revision: int | None = None
        self._in_doubt = False  # a write since the last answered one got no answer
        self._written_at: float | None = None  # when the last write that succeeded was sent

    @property
    def held(self) -> bool:
        return self._revision is not None

    @property
    def renew_every_s(self) -> float:
        return self.ttl_s / 3

    def valid(self) -> bool:
        """Whether the lease is surely still ours: held, and written less than ``ttl_s`` ago.

        Counted from when the last successful write was *sent*, so this turns False before
        JetStream lets the entry expire. A leader acts on its own timers only while this
        holds: cut off from NATS, it stops writing to the store before a standby can lead.
        """
        return (
            self._revision is not None
            and self._written_at is not None
            and time.monotonic() < self._written_at + self.ttl_s
        )

    @classmethod
    async def acquire(
        cls,
        js: JetStreamContext,
        identity: str,
        ttl_s: float,
        *,
        stopping: asyncio.Event,
        settings: Settings | None = None,
    ) -> Self | None:
        """Wait until this coordinator leads; None if ``stopping`` is set first.

        A bus error (NATS out of reach, a stream leader being elected after a node loss)
        is logged and the attempt repeated: a standby outlives any outage.
        """
        lease = cls(await lease_bucket(js, ttl_s, settings), identity, ttl_s)
        announced: str | None = None
        while not stopping.is_set():
            try:
                holder = await lease.try_acquire()
            except nats.errors.Error as exc:
                # A create whose reply was lost may have gone through: the next try finds
                # the lease under our own identity and takes it.
                log.warning("cannot reach the coordinator lease (%s); trying again", repr(exc))
            else:
                if holder is None:
                    return lease
                if holder != announced:
                    log.info("standby: coordinator %r leads; waiting for its lease", holder)
                    announced = holder
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=lease.renew_every_s)
        return None

    async def try_acquire(self) -> str | None:
        """Take the lease if it is free or ours; else the identity of its holder."""
        sent = time.monotonic()
        try:
            self._revision = await self._kv.create(LEADER_KEY, self._value)
            self._written_at = sent
            return None
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await self._kv.get(LEADER_KEY)
        except KeyNotFoundError:  # expired between the two calls: try again next time
            return "(expiring)"
        holder = holder_of(entry.value)
        if holder != self.identity:
            return holder
        sent = time.monotonic()
        try:  # our own lease, from before a restart
            self._revision = await self._kv.update(LEADER_KEY, self._value, last=entry.revision)
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            return "(changing)"
        self._written_at = sent
        return None

    async def renew(self) -> bool:
        """Extend the lease; False when another coordinator has taken it (stop leading).

        Raises:
            nats.errors.Error: NATS could not be reached (try again; the lease may still
                be ours).
        """
        if self._revision is None:
            return False
        sent = time.monotonic()
        try:
            self._revision = await self._write(
                self._kv.update(LEADER_KEY, self._value, last=self._revision)
            )
            self._written_at = sent
            return True
        except KeyWrongLastSequenceError:
            pass
        last = self._revision
        try:
            entry = await self._kv.get(LEADER_KEY)
        except KeyNotFoundError:
            entry = None
        if entry is not None:
            # Replaced. By this very process's renewal, if it is our value right after our
            # last write: a request whose reply was lost (NATS stalled) and that the server
            # applied later. Anything else is another coordinator's write (or a restart of
            # ours elsewhere).
            if entry.value != self._value or entry.revision != last + 1:
                log.error(
                    "lease %s was taken by coordinator %r", LEADER_KEY, holder_of(entry.value)
                )
                self._revision = None
                return False
            self._revision = await self._write(
                self._kv.update(LEADER_KEY, self._value, last=entry.revision)
            )
            self._written_at = sent
            return True
        # Our entry is gone (it expired while NATS was out of reach). Ours still, if
        # re-creating it lands right after our last write (nobody wrote between), or one
        # write later when a renewal of ours went unanswered: the server may have applied
        # it after all (then let it expire). Renewals that went unanswered all carried the
        # same expected revision, so at most one of them can have been applied.
        allowed = last + (2 if self._in_doubt else 1)
        try:
            revision = await self._write(self._kv.create(LEADER_KEY, self._value))
        except KeyWrongLastSequenceError:
            self._revision = None
            return False
        if revision > allowed:
            log.error("lease %s was held by another coordinator meanwhile", LEADER_KEY)
            self._revision = None
            with contextlib.suppress(nats.errors.Error):  # best effort: it expires anyway
                await self._kv.delete(LEADER_KEY, last=revision)
            return False
        self._revision, self._written_at = revision, sent
        return True

    async def _write(self, request: Awaitable[int]) -> int:
        """A lease write; one that gets no answer may still be applied later (in doubt)."""
        try:
            revision = await request
        except KeyWrongLastSequenceError:
            raise
        except nats.errors.Error:
            self._in_doubt = True
            raise
        self._in_doubt = False
        return revision

    async def release(self) -> None:
        """Give the lease up (a clean stop): a standby takes over without waiting for expiry."""
        revision, self._revision = self._revision, None
        if revision is None:
            return
        with contextlib.suppress(nats.errors.Error):  # best effort: it expires anyway
            await self._kv.delete(LEADER_KEY, last=revision)
