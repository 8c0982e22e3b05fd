"""Live run views for the pages: the one fold (:mod:`agentic.contracts.fold`) fed from NATS
or from the store, sent to the browser as server-sent events.

* A ``nats`` run, where a NATS URL is configured: its events from ``AGENTIC_EVENTS``
  (:class:`agentic.bus.follow.RunEvents`, an ordered consumer from the first event),
  folded with :func:`~agentic.contracts.fold.apply`; what was already in the stream is
  folded before the first message goes out.
* Any other run (``inprocess``/``subprocess`` driven from another terminal, Jobs), or
  without NATS: its ``run.json`` read again every :data:`POLL_S` and taken as the view
  (:meth:`RunView.of`), as ``agentic watch`` follows a run.

Each message is :func:`view_json` of the view, sent only when it changed; the stream ends
after the run ended. The runs page gets the unfinished runs' headlines the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import TYPE_CHECKING, Any

from agentic.contracts import RunEvent, RunHeadline, RunRecord, utcnow
from agentic.contracts.fold import RunView, apply, settled
from agentic.errors import AgenticError

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from agentic.settings import Settings
    from agentic.store import RunStore

log = logging.getLogger(__name__)

POLL_S = 0.5
QUIET_S = 1.0
"""Without an event for this long, a NATS follower asks the store whether the run ended."""
DRAIN_S = 0.005


def view_json(view: RunView) -> dict[str, Any]:
    """What a page needs of ``view``: the run's status and each step's status and attempt."""
    steps = {
        step_id: {"status": step.status, "attempt": step.attempt, "message": step.message[:200]}
        for step_id, step in view.steps.items()
    }
    return {"run_id": view.run_id, "status": view.status, "finished": view.finished, "steps": steps}


def advance(view: RunView, events: Iterable[RunEvent]) -> tuple[RunView, str]:
    """``view`` after ``events`` and the message that tells it: what a follower does on
    each step transition (measured in ``benchmarks/bench_console.py``)."""
    for event in events:
        view = apply(view, event)
    return view, json.dumps(view_json(view), separators=(",", ":"))


def initial_view(record: RunRecord) -> RunView:
    """An empty view with the steps of ``record`` pending, for events to fold into."""
    return RunView(run_id=record.run_id).with_steps(s.step_id for s in record.steps)


async def follow_store(
    store: RunStore, run_id: str, *, poll_s: float = POLL_S
) -> AsyncIterator[str]:
    """The views of ``run_id`` from its ``run.json``, each change once, until it ends."""
    last = None
    while True:
        record = await asyncio.to_thread(store.readable_run, run_id)
        if record is not None:
            message = json.dumps(view_json(RunView.of(record)), separators=(",", ":"))
            if message != last:
                last = message
                yield message
            if record.is_terminal:
                return
        await asyncio.sleep(poll_s)


async def follow_nats(
    nc: NATS, settings: Settings, store: RunStore, record: RunRecord
) -> AsyncIterator[str]:
    """The views of a ``nats`` run from its events, until it ends."""
    from agentic.bus.follow import RunEvents

    view = initial_view(record)
    last = None
    async with RunEvents(nc.jetstream(), record.run_id, settings) as events:
        while True:
            event = await events.next(timeout=QUIET_S)
            if event is None:
                found = await asyncio.to_thread(store.readable_run, record.run_id)
                if found is None or not found.is_terminal:
                    continue
                # The run ended and its last events are not in the stream (purged, or a
                # coordinator that never published them): its record says how.
                view = settled(view, found, at=found.finished_at or utcnow())
                batch: list[RunEvent] = []
            else:
                batch = [event]
                while (more := await events.next(timeout=DRAIN_S)) is not None:
                    batch.append(more)
            view, message = advance(view, batch)
            if message != last:
                last = message
                yield message
            if view.finished:
                return


def headline_json(headline: RunHeadline) -> dict[str, Any]:
    return {
        "status": headline.status,
        "steps_succeeded": headline.steps_succeeded,
        "steps_total": headline.steps_total,
    }


async def follow_open_runs(
    store: RunStore, *, poll_s: float = 1.0, stop: Callable[[], bool] = lambda: False
) -> AsyncIterator[str]:
    """The runs page's live rows: every unfinished run's headline, and the last one of each
    run that ended since the previous look."""
    watched: set[str] = set()
    last = None
    while not stop():
        try:
            records = await asyncio.to_thread(store.open_runs)
        except AgenticError as exc:  # a store that went away for a moment
            log.warning("cannot list unfinished runs: %s", exc)
            await asyncio.sleep(poll_s)
            continue
        rows = {r.run_id: headline_json(RunHeadline.of(r)) for r in records}
        for run_id in watched - set(rows):
            ended = await asyncio.to_thread(store.readable_run, run_id)
            if ended is not None:
                rows[run_id] = headline_json(RunHeadline.of(ended))
        watched = {r.run_id for r in records}
        message = json.dumps(rows, separators=(",", ":"), sort_keys=True)
        if message != last:
            last = message
            yield message
        await asyncio.sleep(poll_s)
