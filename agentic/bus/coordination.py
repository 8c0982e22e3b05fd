"""The coordinator's own JetStream objects: its event consumer and its advisory capture.

Next to what :func:`agentic.bus.provision.provision` creates for everyone (the three streams
and the workers consumers), the coordinator needs:

* ``coordinator``: a durable pull consumer on ``AGENTIC_EVENTS`` (``agentic.events.>``; a
  filter on the event type is impossible because run ids may contain dots). It starts with
  the events published after its creation; the coordinator handles them one at a time, in
  order, and acknowledges each once handled (a crash redelivers what it had not finished).
* ``AGENTIC_ADVISORIES``: a work-queue stream that stores the max-deliveries and
  terminated-message advisories of ``AGENTIC_STEPS`` (a worker that refuses a step ends it
  with ``+TERM <reason>``). JetStream publishes those as plain NATS messages, once; stored,
  an advisory raised while the coordinator restarts still reaches it.
* ``coordinator-dlq``: the durable pull consumer of those advisories.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from agentic import names
from agentic.bus.provision import ensure_consumer, ensure_stream, placement
from agentic.settings import Settings

# The coordinator handles an event in a few milliseconds; one it has not acknowledged within
# this time is redelivered (it crashed, or hangs on the store).
EVENTS_ACK_WAIT_S = 60.0
EVENTS_MAX_ACK_PENDING = 10_000


def advisories_stream_config(settings: Settings) -> StreamConfig:
    """``AGENTIC_ADVISORIES``: the max-deliveries advisories of ``AGENTIC_STEPS``."""
    return StreamConfig(
        name=names.ADVISORIES_STREAM,
        description="max-deliveries and terminated-message advisories of AGENTIC_STEPS, "
        "until the coordinator has handled them",
        subjects=[
            names.max_deliveries_advisory(names.STEPS_STREAM, "*"),
            names.terminated_advisory(names.STEPS_STREAM, "*"),
        ],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        num_replicas=settings.nats_replicas,
        placement=placement(settings),
        max_age=settings.events_max_age_s,
    )


def events_consumer_config() -> ConsumerConfig:
    """The coordinator's durable consumer of every run event."""
    return ConsumerConfig(
        name=names.COORDINATOR_EVENTS_CONSUMER,
        durable_name=names.COORDINATOR_EVENTS_CONSUMER,
        description="agentic coordinator: step events of every run",
        filter_subject=names.EVENTS_SUBJECTS,
        deliver_policy=DeliverPolicy.NEW,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=EVENTS_ACK_WAIT_S,
        max_ack_pending=EVENTS_MAX_ACK_PENDING,
    )


def advisories_consumer_config() -> ConsumerConfig:
    """The coordinator's durable consumer of max-deliveries advisories."""
    return ConsumerConfig(
        name=names.DLQ_ADVISORIES_CONSUMER,
        durable_name=names.DLQ_ADVISORIES_CONSUMER,
        description="agentic coordinator: steps out of deliveries, to move to the DLQ",
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=EVENTS_ACK_WAIT_S,
    )


async def provision_coordinator(js: JetStreamContext, settings: Settings) -> None:
    """Create (or update) the advisory stream and both coordinator consumers; idempotent.

    Raises:
        BusError: JetStream refused a configuration (the stream or consumer is named).
    """
    await ensure_stream(js, advisories_stream_config(settings))
    await ensure_consumer(js, names.EVENTS_STREAM, events_consumer_config())
    await ensure_consumer(js, names.ADVISORIES_STREAM, advisories_consumer_config())
