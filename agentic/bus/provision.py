"""Idempotent provisioning of agentic's JetStream streams and consumers.

Every process that needs the bus may call :func:`provision` on start: running it twice, or from
several processes at once, converges on the same configuration. A stream whose configuration
differs from the settings is updated in place; a change JetStream cannot apply in place (for
example a different retention) fails with a :class:`~agentic.errors.BusError` naming the stream.

Choices (see DESIGN §10, the JetStream field notes):

* ``AGENTIC_STEPS`` is a work queue: an acked message is gone, and each pool has exactly one
  durable pull consumer ``workers-<pool>`` filtered on ``agentic.steps.<pool>`` (work-queue
  consumers must not overlap).
* ``ack_wait`` is ``step_ack_wait_s``; workers send in-progress acks well within it while an
  agent runs, so an LLM step may take far longer than the ack wait while a crashed worker's
  step comes back after one ack wait.
* ``max_deliver`` bounds redeliveries; past it JetStream only publishes an advisory and the
  coordinator moves the message to ``AGENTIC_DLQ`` (:func:`agentic.bus.dlq.dead_letter`).
* ``max_ack_pending`` (default 1000) is the most messages of a pool that can be delivered and
  not yet acked. At that limit JetStream silently stops delivering, so it must exceed every
  worker slot of the pool (each holds one message) plus the steps waiting out a nak delay
  (they stay pending). 1000 leaves room for hundreds of workers; raise it beyond that.
* No ``backoff``: retry delays are decided by whoever naks (``msg.nak(delay=...)``).
* Byte limits (``events_max_bytes``, ``steps_max_bytes``, ``dlq_max_bytes``; 0 for none).
  ``AGENTIC_EVENTS`` and ``AGENTIC_DLQ`` drop their oldest messages past theirs: they are
  records, the run store is the truth. ``AGENTIC_STEPS`` discards *new* messages instead: a
  full work queue refuses the next step (the publisher waits, see
  :func:`agentic.bus.messages.publish_step`) and never drops one already queued; lowering
  its limit below what is queued keeps every queued step. JetStream reserves each stream's
  ``max_bytes`` (once per replica) on the server's storage (``max_file_store``) when the
  stream is created or updated, so a limit the servers cannot reserve fails provisioning
  with the setting named. No max age on ``AGENTIC_STEPS``: it would drop queued work.
* Every stream (and the coordinators' KV bucket) has ``AGENTIC_NATS_REPLICAS`` replicas,
  placed on servers with ``AGENTIC_NATS_PLACEMENT_TAGS`` when set. Durable consumers inherit
  their stream's replica count. JetStream changes a stream's replicas in place, so raising
  the setting and restarting the coordinator moves an existing deployment from R1 to R3.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    ConsumerInfo,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    Placement,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.errors import (
    APIError,
    BadRequestError,
    BucketNotFoundError,
    ServiceUnavailableError,
)
from nats.js.kv import KeyValue

from agentic import names
from agentic.errors import BusError, ConfigError
from agentic.settings import Settings

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# Nats-Msg-Id dedup of step attempts works within this window (JetStream's default, 2 min).
STEPS_DUPLICATE_WINDOW_S = 120.0
# How long provisioning waits out a cluster that is electing leaders or adding replicas.
SETTLE_S = 30.0
# Room for headers on top of the payload limit that publishers check.
HEADER_ALLOWANCE_BYTES = 4096
# JetStream's "stream name already in use with a different configuration".
_STREAM_NAME_IN_USE = 10058
# JetStream's "replicas > 1 not supported in non-clustered mode", "insufficient resources"
# and "no suitable peers for placement": more replicas than servers (with the tags).
_REPLICAS_UNSUPPORTED = 10074
_INSUFFICIENT_RESOURCES = 10023
_NO_SUITABLE_PEERS = 10005
# JetStream's "insufficient storage resources available": the byte limits cannot be reserved.
_STORAGE_EXCEEDED = 10047
# The setting that bounds each stream's bytes.
MAX_BYTES_SETTINGS = {
    names.EVENTS_STREAM: "AGENTIC_EVENTS_MAX_BYTES",
    names.STEPS_STREAM: "AGENTIC_STEPS_MAX_BYTES",
    names.DLQ_STREAM: "AGENTIC_DLQ_MAX_BYTES",
}


@dataclass(frozen=True)
class Provisioned:
    """What :func:`provision` left in place."""

    streams: dict[str, StreamInfo]
    consumers: dict[str, ConsumerInfo]


def placement(settings: Settings) -> Placement | None:
    """Where streams go: on servers carrying every tag of ``AGENTIC_NATS_PLACEMENT_TAGS``."""
    tags = [t.strip() for t in (settings.nats_placement_tags or "").split(",") if t.strip()]
    return Placement(tags=tags) if tags else None


def stream_configs(settings: Settings) -> list[StreamConfig]:
    """The configurations of ``AGENTIC_EVENTS``, ``AGENTIC_STEPS`` and ``AGENTIC_DLQ``.

    Raises:
        ConfigError: a byte limit smaller than one message of ``AGENTIC_MAX_MESSAGE_BYTES``.
    """
    max_msg_size = settings.max_message_bytes + HEADER_ALLOWANCE_BYTES
    events_max_age = settings.events_max_age_s
    return [
        StreamConfig(
            name=names.EVENTS_STREAM,
            description="agentic run events (limits retention)",
            subjects=[names.EVENTS_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=settings.nats_replicas,
            placement=placement(settings),
            max_age=events_max_age,
            max_bytes=_max_bytes(names.EVENTS_STREAM, settings.events_max_bytes, max_msg_size),
            discard=DiscardPolicy.OLD,
            max_msg_size=max_msg_size,
            # JetStream refuses a duplicate window longer than the max age.
            duplicate_window=min(STEPS_DUPLICATE_WINDOW_S, events_max_age),
        ),
        StreamConfig(
            name=names.STEPS_STREAM,
            description="agentic step work, one subject per pool (work queue)",
            subjects=[names.STEPS_SUBJECTS],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=settings.nats_replicas,
            placement=placement(settings),
            max_bytes=_max_bytes(names.STEPS_STREAM, settings.steps_max_bytes, max_msg_size),
            # Full: refuse the next step rather than drop queued work.
            discard=DiscardPolicy.NEW,
            max_msg_size=max_msg_size,
            duplicate_window=STEPS_DUPLICATE_WINDOW_S,
        ),
        StreamConfig(
            name=names.DLQ_STREAM,
            description="agentic step messages that exhausted their deliveries",
            subjects=[names.DLQ_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=settings.nats_replicas,
            placement=placement(settings),
            max_age=events_max_age,
            max_bytes=_max_bytes(names.DLQ_STREAM, settings.dlq_max_bytes, max_msg_size),
            discard=DiscardPolicy.OLD,
            duplicate_window=min(STEPS_DUPLICATE_WINDOW_S, events_max_age),
        ),
    ]


def _max_bytes(stream: str, limit: int, max_msg_size: int) -> int:
    """A stream's ``max_bytes``: the setting, or -1 (none) for 0."""
    if limit == 0:
        return -1
    if limit < max_msg_size:
        raise ConfigError(
            f"{MAX_BYTES_SETTINGS[stream]}={limit} cannot hold one message of "
            f"AGENTIC_MAX_MESSAGE_BYTES plus headers ({max_msg_size} bytes): raise it, or 0 "
            f"for no limit on {stream}"
        )
    return limit


def workers_consumer_config(settings: Settings, pool: str) -> ConsumerConfig:
    """The durable pull consumer ``workers-<pool>`` of the pool's work subject."""
    consumer = names.workers_consumer(pool)
    if "." in pool:
        # A consumer name cannot contain '.', and the pool is part of it.
        raise ConfigError(f"pool {pool!r}: pool names used with NATS cannot contain '.'")
    if settings.step_max_ack_pending < 1:
        raise ConfigError("AGENTIC_STEP_MAX_ACK_PENDING must be at least 1")
    return ConsumerConfig(
        name=consumer,
        durable_name=consumer,
        description=f"agentic workers of pool {pool}",
        filter_subject=names.steps_subject(pool),
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.step_ack_wait_s,
        max_deliver=settings.step_max_deliver,
        max_ack_pending=settings.step_max_ack_pending,
    )


async def provision(
    js: JetStreamContext,
    settings: Settings,
    *,
    pools: Iterable[str] = (),
    settle_s: float | None = None,
) -> Provisioned:
    """Create or update the three streams and one workers consumer per pool.

    Args:
        js: a JetStream context.
        settings: stream and consumer limits (``events_max_age_s``, ``*_max_bytes``,
            ``step_*``, ``max_message_bytes``).
        pools: pools to create consumers for; ``settings.default_pool`` is always included.
        settle_s: how long to wait out a cluster that is not ready (:data:`SETTLE_S`); 0
            for a caller that may lack the permission (its requests go unanswered).

    Returns:
        The stream and consumer infos, by name.

    Raises:
        BusError: JetStream refused a configuration (the stream or consumer is named).
        ConfigError: a pool name or limit that cannot work.
    """
    streams = {
        cfg.name or "": await ensure_stream(js, cfg, settle_s=settle_s)
        for cfg in stream_configs(settings)
    }
    consumers = {}
    for pool in dict.fromkeys([settings.default_pool, *pools]):
        config = workers_consumer_config(settings, pool)
        info = await ensure_consumer(js, names.STEPS_STREAM, config, settle_s=settle_s)
        consumers[info.name] = info
    return Provisioned(streams=streams, consumers=consumers)


async def ensure_stream(
    js: JetStreamContext, config: StreamConfig, *, settle_s: float | None = None
) -> StreamInfo:
    """Create the stream, or update it when it exists with another configuration."""
    try:
        # Creating a stream that exists with the same configuration succeeds: concurrent
        # provisioners with the same settings never reach the update.
        return await _settled(lambda: js.add_stream(config), settle_s)
    except BadRequestError as exc:
        if exc.err_code != _STREAM_NAME_IN_USE:
            raise _refused("stream", config.name, exc) from exc
    except (APIError, nats.errors.Error) as exc:
        raise _refused("stream", config.name, exc) from exc
    log.info("updating stream %s to the configured settings", config.name)
    return await update_stream(js, config, settle_s=settle_s)


async def ensure_bucket(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    """KV bucket ``config.bucket``, created as ``config`` says when missing. An existing
    bucket keeps its other settings, but its replicas (and placement) are brought to
    ``config``'s in place.

    Raises:
        BusError: JetStream refused the bucket.
    """
    bucket = config.bucket or ""
    try:
        kv = await js.key_value(bucket)
    except BucketNotFoundError:
        pass
    else:
        await match_bucket_replicas(js, bucket, config.replicas, config.placement)
        return kv
    try:
        return await js.create_key_value(config)
    except nats.errors.Error as exc:  # created meanwhile by another coordinator, or worse
        try:
            return await js.key_value(bucket)
        except BucketNotFoundError:
            raise BusError(f"cannot create the KV bucket {bucket}: {exc}") from exc


async def match_bucket_replicas(
    js: JetStreamContext, bucket: str, replicas: int, where: Placement | None
) -> None:
    """Give KV bucket ``bucket`` ``replicas`` replicas if it has another count (in place).

    Raises:
        BusError: JetStream refused (the bucket's stream is named).
    """
    stream = f"KV_{bucket}"
    try:
        info = await js.stream_info(stream)
    except (APIError, nats.errors.Error) as exc:
        raise _refused("stream", stream, exc) from exc
    if info.config.num_replicas == replicas:
        return
    log.warning(
        "changing the replicas of KV bucket %s from %s to %d",
        bucket,
        info.config.num_replicas,
        replicas,
    )
    config = dataclasses.replace(info.config, num_replicas=replicas)
    if where is not None:
        config = dataclasses.replace(config, placement=where)
    await update_stream(js, config)


async def update_stream(
    js: JetStreamContext, config: StreamConfig, *, settle_s: float | None = None
) -> StreamInfo:
    """Change an existing stream's configuration (replicas change in place).

    Raises:
        BusError: JetStream refused (the stream is named, with the server's reason).
    """
    try:
        return await _settled(lambda: js.update_stream(config), settle_s)
    except (APIError, nats.errors.Error) as exc:
        raise _refused("stream", config.name, exc) from exc


async def ensure_consumer(
    js: JetStreamContext, stream: str, config: ConsumerConfig, *, settle_s: float | None = None
) -> ConsumerInfo:
    """Create or update a durable consumer (JetStream creates or updates in one request)."""
    try:
        return await _settled(lambda: js.add_consumer(stream, config), settle_s)
    except (APIError, nats.errors.Error) as exc:
        raise _refused("consumer", f"{stream}/{config.durable_name}", exc) from exc


async def _settled(call: Callable[[], Awaitable[_T]], settle_s: float | None) -> _T:
    """``call()``, repeated while JetStream answers that it is not ready yet.

    In a cluster, a stream whose replicas are being added or whose leader is being elected
    (a node was lost) answers ``503`` or not at all for a few seconds; provisioning waits
    that out for up to ``settle_s`` (default :data:`SETTLE_S`), then raises the last error.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (SETTLE_S if settle_s is None else settle_s)
    delay = 0.1
    while True:
        try:
            return await call()
        except (ServiceUnavailableError, nats.errors.TimeoutError, nats.errors.NoRespondersError):
            if loop.time() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


def _refused(kind: str, name: str | None, exc: Exception) -> BusError:
    detail = exc.description if isinstance(exc, APIError) and exc.description else str(exc)
    code = exc.err_code if isinstance(exc, APIError) else None
    if code in (_REPLICAS_UNSUPPORTED, _INSUFFICIENT_RESOURCES, _NO_SUITABLE_PEERS):
        detail += (
            " (AGENTIC_NATS_REPLICAS=N needs a cluster of at least N JetStream servers"
            " carrying AGENTIC_NATS_PLACEMENT_TAGS, if set)"
        )
    setting = MAX_BYTES_SETTINGS.get(name or "")
    if setting and code in (_STORAGE_EXCEEDED, _INSUFFICIENT_RESOURCES, _NO_SUITABLE_PEERS):
        detail += (
            f" (JetStream reserves {setting} on every server holding a replica of {name},"
            " within its JetStream storage, max_file_store: lower the setting or give the"
            " servers more storage)"
        )
    return BusError(f"JetStream refused {kind} {name}: {detail or type(exc).__name__}", cause=exc)
