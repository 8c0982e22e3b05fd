"""The coordinator's runs: which are driven here, and what submit, cancel, events and a
restart do to them.

A run is driven by at most one :class:`~services.coordinator.runs.RunDriver`, registered
under its id from the moment it is created (or found pending) until it finishes; a second
submit of the same id finds it there or in the store and starts nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg

from agentic import names, tracing
from agentic.bus.signing import Verifier
from agentic.contracts import (
    CancelledData,
    EventData,
    FailedData,
    RunEvent,
    RunRecord,
    RunRequest,
    StepSpec,
    decode,
    end_payload,
    utcnow,
)
from agentic.contracts.events import END_TYPES
from agentic.errors import AgenticError, ConfigError, DecodeError, StoreError, UnknownRunError
from agentic.ids import check_id
from agentic.logs import log_context
from agentic.preparation import check_same_run
from agentic.recording.cancel import mark_cancelled
from agentic.settings import Settings
from services.coordinator.dead_letters import dead_letter_message
from services.coordinator.effects import Deps
from services.coordinator.intake import Intake, parse_request
from services.coordinator.restore import reusable_results, stored_progress, unfinished_runs
from services.coordinator.runs import RunDriver
from services.lifecycle import FIRST_RETRY_DELAY_S, MAX_RETRY_DELAY_S, persist

if TYPE_CHECKING:
    from agentic.store import RunStore

log = logging.getLogger(__name__)

STEP_EVENTS = frozenset({"step_started", "step_succeeded", "step_failed"})
CANCELLED_BY_REQUEST = "cancelled by request"
SUBMITS_AT_ONCE = 16
# How long a submit waits out a run store that cannot create its run before it answers with
# an error (clients wait 10 s for the answer).
SUBMIT_STORE_WAIT_S = 5.0
"""Submits admitted at once; more wait their turn. Each holds its request, resolved workflow
and specs until its run is started: a burst of a thousand submits must not hold them all."""


class Control:
    """The registry of driven runs and the handlers of everything that changes them.

    Args:
        settings: Limits and defaults.
        deps: Connections and store shared with the run drivers.
    """

    def __init__(self, settings: Settings, deps: Deps) -> None:
        self._settings = settings
        if deps.js is None or deps.timeline is None:
            raise ValueError("the coordinator's control needs its NATS connection")
        self.js, self.timeline = deps.js, deps.timeline
        self.deps = dataclasses.replace(deps, finished=self._forget)
        self._runs: dict[str, RunDriver] = {}
        # Run ids being created or started right now (outside the lock: see submit()).
        self._claimed: set[str] = set()
        self._registry = asyncio.Lock()
        self._admitting = asyncio.Semaphore(SUBMITS_AT_ONCE)
        self._intake = Intake(settings)
        # Unfinished runs found at start-up and not rebuilt yet (see restore()).
        self._unrestored: dict[str, asyncio.Future[None] | None] = {}
        # Whose signatures count: the keys coordinators published in the store (its own too).
        self.verifier = Verifier(self.store.signers)

    @property
    def store(self) -> RunStore:
        return self.deps.store

    def close(self) -> None:
        """Stop every run's timers, the restoring and the planner process."""
        for task in self._unrestored.values():
            if task is not None:
                task.cancel()
        for driver in self._runs.values():
            driver.close()
        self._intake.close()

    # --- restart ------------------------------------------------------------------------

    async def restore(self) -> None:
        """Continue every unfinished ``nats`` run from the store, in the background.

        Only the runs index's open markers are listed here (what it costs depends on the
        number of unfinished runs, not on the history); each run is then rebuilt by a
        background task, oldest first, while submits and cancels are answered. Whatever
        concerns a run not rebuilt yet (its events, a cancel, a submit of its id, a dead
        letter) rebuilds that run first and then proceeds.
        """
        markers = await self._io("listing unfinished runs", unfinished_runs, self.store)
        for marker in markers:
            self._unrestored[marker.run_id] = None
        if markers:
            log.info("coordinator restoring %d unfinished runs", len(markers))
            self.deps.spawn(self._restore_all())

    async def _restore_all(self) -> None:
        count = len(self._unrestored)
        for run_id in list(self._unrestored):
            await self.restored(run_id)
        log.info("coordinator resumed %d unfinished runs", count)

    @property
    def restoring(self) -> int:
        """How many unfinished runs are still waiting to be rebuilt."""
        return len(self._unrestored)

    @property
    def driving(self) -> int:
        """How many runs this coordinator drives now."""
        return len(self._runs)

    async def restored(self, run_id: str) -> None:
        """Return once ``run_id`` is rebuilt, if it was waiting to be (it is now, first)."""
        if run_id not in self._unrestored:
            return
        task = self._unrestored[run_id]
        if task is None:
            task = asyncio.ensure_future(self._restore_run(run_id))
            self._unrestored[run_id] = task
        try:
            await asyncio.shield(task)
        finally:
            if task.done():
                self._unrestored.pop(run_id, None)

    async def _restore_run(self, run_id: str) -> None:
        """Rebuild one unfinished run from the store and continue it."""
        with log_context(run_id=run_id):
            await self._restore_one(run_id)

    async def _restore_one(self, run_id: str) -> None:
        try:
            record = await self._io("reading run.json", self.store.find_run, run_id)
            await self._io("indexing", self.store.index.settle, run_id, record)
            if record is None or record.backend != "nats" or record.status != "running":
                return
            driver = await self._driver_or_fail(record)
            if driver is None:
                return
            self._runs[run_id] = driver
            progress = await self._io("reading progress", stored_progress, self.store, record)
            await driver.resume(
                progress.committed, progress.attempts_seen, progress.provider_failures
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # one damaged run must not keep the others from being restored
            log.exception("run %s could not be restored", run_id)

    # --- submit -------------------------------------------------------------------------

    async def submit(self, raw: bytes) -> dict[str, Any]:
        """Answer a submit request: start the run unless its id is known.

        The registry lock is held only to look up and claim a run id, never across store
        I/O (which may wait out an outage): one slow submit holds up no other.

        Raises:
            AgenticError: the request cannot become a run (the reply's ``error``).
        """
        async with self._admitting:
            return await self._submit(raw)

    async def _submit(self, raw: bytes) -> dict[str, Any]:
        request = parse_request(raw, settings=self._settings)
        if request.run_id is not None and await self._adopt(request.run_id, request):
            return self._accepted(request.run_id)
        record = await self._intake.prepare(request, store_url=self.store.url)
        if record.is_terminal:  # a goal the planner could not plan: stored as a failed run
            ended = end_payload(END_TYPES[record.status], error=record.error or "")
            await self._publish(record.run_id, ended)
            return self._accepted(record.run_id)
        # Created ``running``: the driver need not write it again, and a restart continues
        # the run even if this process dies before the run's first step is out.
        # Its trace: the client's, or one rooted here (docs/observability.md, "Traces").
        trace = tracing.root(f"run {record.workflow_name}", {"agentic.run_id": record.run_id})
        record = record.model_copy(update={"status": "running", "traceparent": trace})
        if not await self._claim(record.run_id):
            return self._accepted(record.run_id)  # a concurrent submit of the same id has it
        try:
            created = await self._io_before_reply("creating the run", self.store.create_run, record)
            driver = await self._driver_or_fail(record) if created else None
            if driver is not None:
                self._runs[record.run_id] = driver
        finally:
            self._claimed.discard(record.run_id)
        if not created:  # submitted meanwhile by a client that wrote run.json itself
            await self._adopt(record.run_id)
        elif driver is None:
            raise ConfigError(f"run {record.run_id!r} could not start: see its run.json")
        else:
            await self._start(driver, record)
        return self._accepted(record.run_id)

    async def _start(self, driver: RunDriver, record: RunRecord) -> None:
        """Start driving a run submitted to this coordinator."""
        with log_context(run_id=record.run_id):
            workflow = record.workflow.name if record.workflow else "?"
            log.info("run %s started: workflow %s", record.run_id, workflow)
            results = await self._io("reading results", reusable_results, self.store, record)
            await driver.start(results)

    def _accepted(self, run_id: str) -> dict[str, Any]:
        """The reply to an accepted submit: the run, and the store it is recorded in (a
        client that reads another store can say so)."""
        return {"run_id": run_id, "store": self.store.url}

    async def _claim(self, run_id: str) -> bool:
        """Reserve ``run_id`` for the caller; False when it is driven or being started."""
        async with self._registry:
            if run_id in self._runs or run_id in self._claimed:
                return False
            self._claimed.add(run_id)
            return True

    async def _adopt(self, run_id: str, request: RunRequest | None = None) -> bool:
        """True when ``run_id`` exists; a ``pending`` nats run is started now.

        Raises:
            ConfigError: ``request`` asks for another workflow or goal than that run's.
        """
        await self.restored(run_id)
        async with self._registry:
            driven = self._runs.get(run_id)
            if driven is not None and request is not None:
                check_same_run(driven.record, request)
            if driven is not None or run_id in self._claimed:
                return True
        record = await self._io_before_reply("reading run.json", self.store.find_run, run_id)
        if record is None:
            return False
        if request is not None:
            check_same_run(record, request)
        if record.status != "pending" or record.backend != "nats":
            return True
        if not await self._claim(run_id):
            return True
        try:
            driver = await self._driver_or_fail(record)
            if driver is not None:
                self._runs[run_id] = driver
        finally:
            self._claimed.discard(run_id)
        if driver is not None:
            await self._start(driver, record)
        return True

    async def _driver_or_fail(self, record: RunRecord) -> RunDriver | None:
        """A driver for ``record``, or None after recording why the run cannot run.

        A record found in the store (a client wrote it before submitting) passes the same
        checks as a submitted request: its providers must be the catalog's.
        """
        try:
            specs = await asyncio.to_thread(self._intake.admit, record, store_url=self.store.url)
        except AgenticError as exc:
            log.error("run %s cannot run: %s", record.run_id, exc)
            failed = record.model_copy(
                update={"status": "failed", "error": str(exc), "finished_at": utcnow()}
            )
            await self._io("writing run.json", self.store.write_run, failed)
            await self._publish(record.run_id, FailedData(error=str(exc)))
            return None
        return RunDriver(record, specs, self.deps)

    # --- cancel -------------------------------------------------------------------------

    async def cancel(self, raw: bytes) -> dict[str, Any]:
        """Answer a cancel request ``{"run_id": …, "reason"?: …}``.

        Raises:
            AgenticError: a malformed request, or a run this coordinator does not know.
        """
        run_id, reason = _parse_cancel(raw, self._settings.max_request_bytes)
        await self.restored(run_id)
        driver = self._runs.get(run_id)
        if driver is not None:
            await driver.cancel(reason)
            return {"ok": True, "run_id": run_id, "status": driver.record.status}
        record = await self._io("reading run.json", self.store.find_run, run_id)
        if record is None:
            raise UnknownRunError(f"unknown run {run_id!r}")
        if not record.is_terminal:
            if record.backend != "nats":
                raise ConfigError(
                    f"run {run_id!r} runs on the {record.backend} backend, not on the "
                    "coordinator: stop the process that runs it"
                )
            record = await self._io("cancelling", mark_cancelled, self.store, run_id, reason)
            await self._publish(run_id, CancelledData(error=reason))
        return {"ok": True, "run_id": run_id, "status": record.status}

    # --- events -------------------------------------------------------------------------

    async def on_event_message(self, msg: Msg) -> None:
        """Route one message of the events consumer to its run (others are skipped)."""
        if msg.headers and msg.headers.get(names.PUBLISHER_HEADER) == "coordinator":
            return
        try:
            if names.event_type_from_subject(msg.subject) not in STEP_EVENTS:
                return
            event = decode(RunEvent, msg.data)
            if names.events_subject(event.run_id, event.type) != msg.subject:
                raise ValueError(f"a {event.type} event of run {event.run_id!r}")
        except (ValueError, AgenticError) as exc:
            log.warning("skipping event on %s: %s", msg.subject, exc)
            return
        self.timeline.observe(event, msg.metadata.sequence.stream)
        # What the run's driver logs (and the tasks it starts) names the run and the step.
        with log_context(run_id=event.run_id, step_id=event.step_id, attempt=event.attempt):
            await self.restored(event.run_id)
            driver = self._runs.get(event.run_id)
            if driver is None:
                return
            try:
                await driver.on_step_event(event)
            except Exception:  # one run's failure must not stop the others
                log.exception("run %s: handling %s failed", event.run_id, event.type)

    async def on_refused(self, seq: int, reason: str) -> bool:
        """A worker refused step message ``seq``; True when it was one of this coordinator's
        runs' messages (whose step then fails)."""
        for driver in list(self._runs.values()):
            if await driver.on_refused(seq, reason):
                return True
        return False

    async def dead_letter(self, spec: StepSpec, deliveries: int) -> str:
        """Fail the step whose message ran out of deliveries; returns the reason."""
        await self.restored(spec.run_id)
        driver = self._runs.get(spec.run_id)
        if driver is None:
            return dead_letter_message(spec, deliveries)
        return await driver.on_dead_letter(spec, deliveries)

    # --- helpers ------------------------------------------------------------------------

    def _forget(self, run_id: str) -> None:
        driver = self._runs.pop(run_id, None)
        self.timeline.forget(run_id)
        if driver is not None and driver.record.request.goal is not None:
            self.deps.spawn(self._intake.planner.finished(driver.record))

    async def _publish(self, run_id: str, payload: EventData) -> None:
        """Publish the run's next event: ``payload`` and its type."""
        timeline = self.timeline
        await persist(
            f"publishing {payload.type} of run {run_id}",
            lambda: timeline.publish(run_id, payload.type, data=payload.as_data()),
            stopping=self.deps.stopping,
        )

    async def _io_before_reply(self, what: str, fn: Any, *args: Any) -> Any:
        """Store I/O a submit needs before the run exists: an outage is waited out for
        :data:`SUBMIT_STORE_WAIT_S` at most (within a client's 10 s timeout), then the submit
        is answered with an error and nothing is created: never silence, then a run.

        Raises:
            StoreError: the store is still unavailable.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SUBMIT_STORE_WAIT_S
        delay = FIRST_RETRY_DELAY_S
        while True:
            try:
                return await asyncio.to_thread(fn, *args)
            except StoreError as exc:
                if not exc.retryable or loop.time() + delay > deadline:
                    raise StoreError(
                        f"the run store is unavailable ({what}: {exc}); no run was created: "
                        "submit again later"
                    ) from exc
                log.warning("%s failed, retrying in %.1f s: %s", what, delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY_S)

    async def _io(self, what: str, fn: Any, *args: Any) -> Any:
        return await persist(
            what, lambda: asyncio.to_thread(fn, *args), stopping=self.deps.stopping
        )


def _parse_cancel(raw: bytes, max_bytes: int) -> tuple[str, str]:
    if len(raw) > max_bytes:
        raise DecodeError(f"cancel request of {len(raw)} bytes is over {max_bytes} bytes")
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise DecodeError(f"cancel request is not JSON: {exc}", raw=raw[:1024]) from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("run_id"), str):
        raise DecodeError('a cancel request is {"run_id": "<id>"}', raw=raw[:1024])
    reason = doc.get("reason")
    if not isinstance(reason, str) or not reason:
        reason = CANCELLED_BY_REQUEST
    return check_id(doc["run_id"], "run id"), reason
