"""Provider budgets shared by every worker of a NATS installation: the KV bucket
``AGENTIC_BUDGETS`` (the rule and its meaning: :mod:`agentic.budget`).

Keys, per provider (a digest of its id: ids may hold dots, which separate key tokens):

* ``<p>.slot.<i>`` for ``i < concurrency``: a slot, held by one step. Its value names the
  holder and when the lease ends; the holder writes it again with every in-progress beat.
  A slot is taken by creating its key (or, once its lease ended, by a compare-and-set
  update of the expired value), and given back by deleting it: a worker that crashed
  frees its slots when their leases end, without anyone cleaning up.
* ``<p>.req.<minute>`` and ``<p>.tok.<minute>``: the requests and tokens the calendar
  minute has seen, increased by compare-and-set.

The bucket keeps each key a few minutes after its last write (its ``ttl``), so the
counters of past minutes go away by themselves. Budgets fail open: a worker that cannot
reach the bucket runs the step (and says so in its log), as claims do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from agentic import names
from agentic.budget import WINDOW_S, Admission, charges, window
from agentic.bus.provision import ensure_bucket, placement
from agentic.contracts import Limits, Usage
from agentic.settings import Settings

log = logging.getLogger(__name__)

CAS_TRIES = 10
WRONG_LAST_SEQUENCE = 10071  # JetStream's error code for a failed compare-and-set


def budgets_ttl_s(settings: Settings) -> float:
    """How long a key outlives its last write: past its minute, and past a slot's lease."""
    return max(3 * WINDOW_S, 3 * settings.step_ack_wait_s)


def lease_s(settings: Settings) -> float:
    """How long a slot stays taken after its holder's last beat (one ack wait: the holder
    beats three times in it)."""
    return settings.step_ack_wait_s


async def provision_budgets(js: JetStreamContext, settings: Settings) -> KeyValue:
    """Create the bucket when missing (the coordinator does, at start).

    Raises:
        BusError: JetStream refused it.
    """
    config = KeyValueConfig(
        bucket=names.BUDGETS_BUCKET,
        description="agentic: provider budgets (slots held, requests and tokens per minute)",
        history=1,
        ttl=budgets_ttl_s(settings),
        storage=StorageType.MEMORY,
        replicas=settings.nats_replicas,
        placement=placement(settings),
        direct=True,
    )
    return await ensure_bucket(js, config)


def provider_key(provider_id: str) -> str:
    """The key token of a provider."""
    return hashlib.sha256(provider_id.encode()).hexdigest()[:24]


@dataclass
class BusLease:
    """One step's admission: the slot it holds (if the provider limits concurrency)."""

    provider_id: str
    limits: Limits
    slot: str | None = None
    revision: int | None = None


class BusBudgets:
    """The budgets of a NATS installation, seen from one worker.

    Args:
        kv: The ``AGENTIC_BUDGETS`` bucket.
        holder: Who takes slots (for the values: host, pid, slot).
        lease_s: How long a slot stays taken without a beat.
        clock: Epoch seconds (windows and lease ends are compared across workers).
    """

    def __init__(
        self,
        kv: KeyValue,
        holder: str,
        *,
        lease_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._kv = kv
        self._holder = holder
        self._lease_s = lease_s
        self._clock = clock

    async def try_acquire(self, provider_id: str, limits: Limits) -> BusLease | None:
        """Admit one step now: a free slot taken and a request reserved; or None.

        Raises:
            nats.errors.Error: the bucket could not be reached.
        """
        p = provider_key(provider_id)
        minute = window(self._clock())
        requests = await self._count(f"{p}.req.{minute}")
        tokens = await self._count(f"{p}.tok.{minute}")
        if not Admission(limits).admits(held=0, requests=requests, tokens=tokens):
            return None
        lease = BusLease(provider_id, limits)
        if limits.concurrency is not None and not await self._take_slot(lease, p):
            return None
        if limits.requests_per_minute is not None and not await self._add(
            f"{p}.req.{minute}", 1, below=limits.requests_per_minute
        ):
            await self.release(lease, None)  # another worker took the minute's last request
            return None
        return lease

    async def keep(self, lease: BusLease) -> None:
        """Extend the lease of the slot the step holds (with the message's in-progress
        beat). A slot lost meanwhile (the bus was out of reach past the lease) is not taken
        back: the step goes on, one over the limit for a while, and says so in the log."""
        if lease.slot is None or lease.revision is None:
            return
        try:
            lease.revision = await self._kv.update(lease.slot, self._value(), last=lease.revision)
        except KeyWrongLastSequenceError:
            log.warning("the budget slot of %s was taken over meanwhile", lease.provider_id)
            lease.revision = None

    async def release(self, lease: BusLease, usage: Usage | None) -> None:
        """The step ended: give its slot back, charge its requests and tokens.

        Raises:
            nats.errors.Error: the bucket could not be reached (the slot's lease ends).
        """
        if lease.slot is not None and lease.revision is not None:
            try:
                await self._kv.delete(lease.slot, last=lease.revision)
            except (KeyWrongLastSequenceError, BadRequestError) as exc:
                # Taken over after its lease ended: it is someone else's now. (A delete's
                # wrong last sequence comes back as a plain 400 from nats-py.)
                if getattr(exc, "err_code", WRONG_LAST_SEQUENCE) != WRONG_LAST_SEQUENCE:
                    raise
            lease.slot = lease.revision = None
        requests, tokens = charges(usage)
        p, minute = provider_key(lease.provider_id), window(self._clock())
        if requests and lease.limits.requests_per_minute is not None:
            await self._add(f"{p}.req.{minute}", requests)
        if tokens and lease.limits.tokens_per_minute is not None:
            await self._add(f"{p}.tok.{minute}", tokens)

    # --- keys ------------------------------------------------------------------------------

    def _value(self) -> bytes:
        return json.dumps({"holder": self._holder, "until": self._clock() + self._lease_s}).encode()

    async def _take_slot(self, lease: BusLease, p: str) -> bool:
        assert lease.limits.concurrency is not None
        for index in range(lease.limits.concurrency):
            key = f"{p}.slot.{index}"
            try:
                lease.revision = await self._kv.create(key, self._value())
                lease.slot = key
                return True
            except KeyWrongLastSequenceError:
                pass
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                continue  # freed meanwhile: the next round tries it again
            if _until(entry.value) > self._clock():
                continue
            try:  # its holder stopped beating: the lease is over
                lease.revision = await self._kv.update(key, self._value(), last=entry.revision)
                lease.slot = key
                log.info("took over the expired budget slot %s of %s", index, lease.provider_id)
                return True
            except KeyWrongLastSequenceError:
                continue
        return False

    async def _count(self, key: str) -> int:
        try:
            entry = await self._kv.get(key)
        except KeyNotFoundError:
            return 0
        return _number(entry.value)

    async def _add(self, key: str, amount: int, *, below: int | None = None) -> bool:
        """Add ``amount`` to a counter; with ``below``, only while it is below that."""
        for _ in range(CAS_TRIES):
            try:
                entry = await self._kv.get(key)
            except KeyNotFoundError:
                entry = None
            current = _number(entry.value) if entry is not None else 0
            if below is not None and current >= below:
                return False
            value = str(current + amount).encode()
            try:
                if entry is None:
                    await self._kv.create(key, value)
                else:
                    await self._kv.update(key, value, last=entry.revision)
                return True
            except KeyWrongLastSequenceError:
                continue  # another worker counted meanwhile
        log.warning("could not count %s after %d tries", key, CAS_TRIES)
        return below is None


def _until(value: bytes | None) -> float:
    try:
        return float(json.loads(value or b"{}").get("until", 0.0))
    except (ValueError, TypeError, AttributeError):
        return 0.0


def _number(value: bytes | None) -> int:
    try:
        return int(value or b"0")
    except ValueError:
        return 0
