"""``agentic coordinator --check`` / ``agentic worker --check``: a health exit code for probes.

Healthy means: NATS answers, the three agentic streams exist (and, for a worker, its pool's
consumer), and the run store can be read. Each problem is reported on its own line.
"""

from __future__ import annotations

import asyncio

import nats.errors
from nats.js.errors import NotFoundError

from agentic import names
from agentic.bus import connect
from agentic.errors import AgenticError
from agentic.settings import Settings

# A probe must answer well within Kubernetes' default probe timeout budget.
CHECK_TIMEOUT_S = 8.0


async def problems(settings: Settings, *, pool: str | None = None) -> list[str]:
    """What keeps a service from working; empty when it can.

    Args:
        settings: NATS and store settings.
        pool: Also require the ``workers-<pool>`` consumer (workers).
    """
    found = await _bus_problems(settings, pool)
    found += await asyncio.to_thread(_store_problems, settings.run_store_url)
    return found


async def _bus_problems(settings: Settings, pool: str | None) -> list[str]:
    try:
        nc = await asyncio.wait_for(connect(settings, name="agentic-check"), CHECK_TIMEOUT_S)
    except (AgenticError, TimeoutError) as exc:
        return [str(exc) or "NATS did not answer in time"]
    found = []
    try:
        js = nc.jetstream()
        for stream in (names.EVENTS_STREAM, names.STEPS_STREAM, names.DLQ_STREAM):
            try:
                await js.stream_info(stream)
            except NotFoundError:
                found.append(f"stream {stream} does not exist (the coordinator creates it)")
        if pool is not None:
            consumer = names.workers_consumer(pool)
            try:
                await js.consumer_info(names.STEPS_STREAM, consumer)
            except NotFoundError:
                found.append(f"consumer {consumer} does not exist")
    except nats.errors.Error as exc:
        found.append(f"JetStream did not answer: {type(exc).__name__}: {exc}")
    finally:
        await nc.close()
    return found


def _store_problems(url: str) -> list[str]:
    from agentic.store import open_store

    try:
        open_store(url).run_exists("agentic-health-check")
    except AgenticError as exc:
        return [f"run store {url}: {exc}"]
    return []
