"""Run events keep one gapless ``seq`` per run, whoever publishes them (a real nats-server)."""

from __future__ import annotations

import asyncio

import pytest
from nats.js import JetStreamContext

from agentic import names
from agentic.bus import provision
from agentic.bus.timeline import RunTimeline
from agentic.contracts import RunEvent
from agentic.settings import Settings

pytestmark = [pytest.mark.nats, pytest.mark.procs]


async def stored_events(js: JetStreamContext, run_id: str) -> list[tuple[int, RunEvent]]:
    """(stream sequence, event) of every stored event of ``run_id``."""
    sub = await js.subscribe(names.run_timeline_filter(run_id), ordered_consumer=True)
    found = []
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except TimeoutError:
                return found
            found.append((msg.metadata.sequence.stream, RunEvent.model_validate_json(msg.data)))
    finally:
        await sub.unsubscribe()


async def test_events_of_two_concurrent_publishers_are_numbered_without_gaps_or_repeats(
    js: JetStreamContext, nats_settings: Settings
) -> None:
    await provision(js, nats_settings)
    coordinator = RunTimeline(js, publisher="coordinator", max_bytes=65536)
    worker = RunTimeline(js, publisher="worker", max_bytes=65536)

    async def publish_many(timeline: RunTimeline, step: str) -> None:
        for attempt in range(1, 16):
            await timeline.publish("tl-1", "step_progress", step_id=step, attempt=attempt)

    await asyncio.gather(publish_many(coordinator, "a"), publish_many(worker, "b"))
    stored = await stored_events(js, "tl-1")

    assert [event.seq for _, event in stored] == list(range(30))
    assert [seq for seq, _ in stored] == sorted(seq for seq, _ in stored)


async def test_a_duplicate_event_is_dropped_and_takes_no_number(
    js: JetStreamContext, nats_settings: Settings
) -> None:
    await provision(js, nats_settings)
    first = RunTimeline(js, publisher="worker", max_bytes=65536)
    second = RunTimeline(js, publisher="worker", max_bytes=65536)
    msg_id = names.event_msg_id("tl-2", "s", 1, "step_succeeded")

    stored = await first.publish("tl-2", "step_succeeded", step_id="s", attempt=1, msg_id=msg_id)
    await first.publish("tl-2", "step_ready", step_id="t", attempt=1)
    again = await second.publish("tl-2", "step_succeeded", step_id="s", attempt=1, msg_id=msg_id)
    after = await second.publish("tl-2", "succeeded")

    assert stored is not None and stored.seq == 0
    assert again is None
    assert after is not None and after.seq == 2
    assert [e.type for _, e in await stored_events(js, "tl-2")] == [
        "step_succeeded",
        "step_ready",
        "succeeded",
    ]


async def test_a_run_whose_id_extends_another_has_its_own_numbering(
    js: JetStreamContext, nats_settings: Settings
) -> None:
    await provision(js, nats_settings)
    timeline = RunTimeline(js, publisher="coordinator", max_bytes=65536)
    await timeline.publish("tl-3", "planned")
    await timeline.publish("tl-3.x", "planned")
    await timeline.publish("tl-3.x", "succeeded")

    restarted = RunTimeline(js, publisher="coordinator", max_bytes=65536)  # nothing cached
    last = await restarted.publish("tl-3", "succeeded")

    assert last is not None and last.seq == 1
