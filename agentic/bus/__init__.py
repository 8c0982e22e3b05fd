"""The NATS JetStream bus: connection, provisioning, messages, work queue, DLQ, embedded server.

Importing this package imports ``nats``; the rest of the core never imports it at import time
(DESIGN §8), so only code that talks to the bus pays for it.

Typical use by a service::

    nc = await connect(settings, name="agentic-worker")
    js = nc.jetstream()
    await provision(js, settings, pools=["default"])
    await publish_step(js, spec, max_bytes=settings.max_message_bytes)
"""

from agentic.bus.connect import connect, server_urls
from agentic.bus.dlq import DeadLetter, MaxDeliveries, dead_letter, parse_max_deliveries
from agentic.bus.embedded import EmbeddedCluster, EmbeddedNats, nats_server_binary
from agentic.bus.feed import PullFeed
from agentic.bus.messages import decode_event, decode_spec, publish_event, publish_step
from agentic.bus.provision import (
    Provisioned,
    ensure_consumer,
    ensure_stream,
    provision,
    stream_configs,
    workers_consumer_config,
)
from agentic.bus.work import (
    delivery_count,
    fetch_one,
    heartbeat_interval,
    keep_in_progress,
    pull_steps,
)

__all__ = [
    "DeadLetter",
    "EmbeddedCluster",
    "EmbeddedNats",
    "MaxDeliveries",
    "Provisioned",
    "PullFeed",
    "connect",
    "dead_letter",
    "decode_event",
    "decode_spec",
    "delivery_count",
    "ensure_consumer",
    "ensure_stream",
    "fetch_one",
    "heartbeat_interval",
    "keep_in_progress",
    "nats_server_binary",
    "parse_max_deliveries",
    "provision",
    "publish_event",
    "publish_step",
    "pull_steps",
    "server_urls",
    "stream_configs",
    "workers_consumer_config",
]
