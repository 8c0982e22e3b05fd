"""One worker slot: fetch one step message, handle it, decide what becomes of the message.

The decision, by outcome (NATS redelivery is for lost workers, the coordinator's retries
are for failed steps):

=====================================  ============================================
outcome                                message
=====================================  ============================================
the step ran (succeeded or failed)     attempt written, result committed when final,
                                       event published, then **ack**; the coordinator
                                       decides about a retry (a new attempt, a new
                                       message)
the step ran past its ``timeout_s``    killed, recorded as a retryable ``StepTimeout``
                                       failure, event published, **ack**
the step process crashed               **nak** with a short delay: redelivered (to any
                                       worker) like the step of a crashed worker, until
                                       ``max_deliver`` sends it to the dead-letter queue
its run was cancelled or the attempt   killed, **term** (nothing to record)
was terminated by the coordinator
the worker is shutting down (SIGTERM)  killed after the grace period, **nak** at once
an already committed step (duplicate)  its event published again, **ack**
refused: unsigned, not a StepSpec,     **term** with the reason (``+TERM agentic
another store, a provider that is not  refused: …``): nothing written, nothing
this worker's catalog entry            published (:mod:`services.worker.gate`)
=====================================  ============================================

The step starts before ``step_started`` is published (the event goes out while it runs).
A step that ran is recorded, reported and acked while the slot already fetches and runs
the next one: the step process is free, so this is no prefetching.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import nats.errors
from nats.aio.msg import Msg

from agentic import failures, names, tracing
from agentic.budget import WAIT_POLL_S, waiting_note
from agentic.bus import delivery_count, fetch_one, keep_in_progress
from agentic.bus.budget import BusLease
from agentic.bus.claims import Claim
from agentic.contracts import TERMINAL_STATUSES, Limits, StepError, StepResult, StepSpec, utcnow
from agentic.errors import AgenticError
from agentic.logs import log_context
from agentic.recording.attempts import record_attempt
from agentic.recording.outcome import failed_attempt
from services.lifecycle import persist
from services.worker.gate import Refused, refuse
from services.worker.runner import StepProcessError

if TYPE_CHECKING:
    from agentic.store import RunStore
    from services.worker.service import WorkerContext

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S = 1.0
CRASH_REDELIVERY_DELAY_S = 1.0

Interrupt = Literal["terminated", "shutdown"]


@dataclass(frozen=True)
class Outcome:
    """What became of one step execution."""

    kind: Literal["finished", "timed_out", "crashed", "terminated", "shutdown", "superseded"]
    result: StepResult | None = None
    detail: str = ""
    started_at: datetime | None = None  # when the step was handed to its step process


class Slot:
    """Runs one step at a time, in its own step process or a thread of a shared host
    (:mod:`services.worker.runner`).

    Args:
        index: The slot's number (for logs).
        ctx: What the slots of a worker share.
    """

    def __init__(self, index: int, ctx: WorkerContext) -> None:
        self.index = index
        self._ctx = ctx
        self.runner = ctx.runner()
        self.current: StepSpec | None = None
        self._interrupt: Interrupt | None = None
        self._wake = asyncio.Event()
        self._finishing: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the step process."""
        await self.runner.start()

    async def close(self) -> None:
        """Kill the step process."""
        await self.runner.stop()

    def interrupt(self, reason: Interrupt) -> None:
        """Stop the running step (its run was cancelled, or the worker is shutting down)."""
        if self.current is not None:
            self._interrupt = reason
            self._wake.set()

    async def serve(self) -> None:
        """Fetch and handle steps until the worker stops (or, in burst mode, runs dry)."""
        ctx = self._ctx
        sub = await ctx.bind()
        try:
            while not ctx.stopping.is_set():
                if not self.runner.running or self.runner.worn_out():
                    # Killed or crashed with its last step, or due for recycling. A step
                    # process that cannot start stops the slot (StepProcessError): every
                    # step would fail the same way.
                    await self.runner.restart()
                try:
                    msg = await fetch_one(sub, timeout=FETCH_TIMEOUT_S)
                except nats.errors.Error as exc:  # disconnected: nats-py reconnects on its own
                    log.warning("slot %d: fetching failed: %s", self.index, exc)
                    await asyncio.sleep(FETCH_TIMEOUT_S)
                    continue
                if msg is None:
                    if ctx.burst and await self._settled() and await ctx.queue_empty():
                        return
                    continue
                try:
                    await self._handle(msg)
                except Exception:  # one bad step must not stop the slot: the message comes back
                    log.exception("slot %d: handling %s failed", self.index, msg.subject)
                    with contextlib.suppress(nats.errors.Error):
                        await msg.nak(delay=CRASH_REDELIVERY_DELAY_S)
        finally:
            await self._settled()

    # --- one message ----------------------------------------------------------------------

    async def _handle(self, msg: Msg) -> None:
        ctx = self._ctx
        try:
            spec = await ctx.gate.admit(msg)
        except Refused as exc:
            await refuse(msg, exc.reason)
            return
        # What the slot logs about the step (and the recording task it starts) names it;
        # the message's trace context goes on to the step process (agentic.tracing).
        with (
            log_context(run_id=spec.run_id, step_id=spec.step_id, attempt=spec.attempt),
            tracing.carried(tracing.from_headers(msg.headers)),
        ):
            await self._handle_admitted(msg, spec)

    async def _handle_admitted(self, msg: Msg, spec: StepSpec) -> None:
        ctx = self._ctx
        committed, run_over = await ctx.read(_what_is_stored, ctx.store, spec)
        if committed is not None:  # a duplicate delivery: say it again, run nothing
            await ctx.report(committed)
            await msg.ack()
            return
        if run_over:
            log.info("run %s is over: dropping step %s", spec.run_id, spec.step_id)
            await msg.term()
            return
        async with keep_in_progress(msg, every_s=ctx.heartbeat_s):
            lease = await self._admit(spec)
            if isinstance(lease, str):  # stopped while it waited for its provider's budget
                await self._decide(msg, spec, Outcome(lease))
                return
            async with self._holding(lease):
                outcome = await self._execute(spec, delivery_count(msg))
            await self._release(lease, outcome)
            await self._settled()  # one step finishing at a time: its ack before the next
            if outcome.kind in ("finished", "timed_out"):
                # Recording, reporting and acking overlap the slot's next step: the step
                # process is free, and the next message is fetched only now that it is.
                # Started here, the recording goes first on the next turn of the loop.
                self._finishing = asyncio.create_task(self._finish(msg, spec, outcome))
                return
        await self._decide(msg, spec, outcome)

    async def _admit(self, spec: StepSpec) -> BusLease | Interrupt | None:
        """Wait until the budget of the step's provider lets it start (agentic.budget).

        Returns the lease to give back when the step ends (None: no limits, or the budgets
        cannot be reached: the step runs), or why the wait ended without a start: its run
        is over, or the worker is shutting down. The wait does not count against the
        step's ``timeout_s``: its clock starts in :meth:`_execute`.
        """
        ctx, provider = self._ctx, spec.agent_provider
        if ctx.budgets is None or not provider.get("limits"):
            return None
        provider_id, limits = str(provider.get("id")), Limits.model_validate(provider["limits"])
        told = False
        self.current, self._interrupt = spec, None
        try:
            while True:
                try:
                    lease = await ctx.budgets.try_acquire(provider_id, limits)
                except nats.errors.Error as exc:  # fail open, as claims do
                    log.warning("budget of %s out of reach (%s): the step runs", provider_id, exc)
                    return None
                if lease is not None:
                    return lease
                if not told:
                    told = True
                    with contextlib.suppress(AgenticError, nats.errors.Error):
                        await ctx.progress(spec, waiting_note(provider_id))
                if self._interrupt is not None:
                    return self._interrupt
                if ctx.stopping.is_set():
                    return "shutdown"
                if await self._run_is_over(spec):
                    return "terminated"
                await asyncio.sleep(WAIT_POLL_S * random.uniform(0.5, 1.5))
        finally:
            self.current = None

    @contextlib.asynccontextmanager
    async def _holding(self, lease: BusLease | None) -> AsyncIterator[None]:
        """Keep the lease of the step's budget slot while the step runs."""
        budgets = self._ctx.budgets
        if lease is None or lease.slot is None or budgets is None:
            yield
            return

        async def beat() -> None:
            while True:
                await asyncio.sleep(self._ctx.heartbeat_s)
                try:
                    await budgets.keep(lease)
                except nats.errors.Error as exc:
                    log.warning("budget slot of %s not renewed: %s", lease.provider_id, exc)

        beating = asyncio.create_task(beat())
        try:
            yield
        finally:
            beating.cancel()

    async def _release(self, lease: BusLease | None, outcome: Outcome) -> None:
        budgets = self._ctx.budgets
        if lease is None or budgets is None:
            return
        usage = outcome.result.usage if outcome.result is not None else None
        try:
            await budgets.release(lease, usage)
        except nats.errors.Error as exc:  # the slot's lease ends by itself
            log.warning("budget of %s not given back: %s", lease.provider_id, exc)

    async def _execute(self, spec: StepSpec, delivery: int) -> Outcome:
        """Run the step in the step process, watching its timeout and its run.

        The step starts before ``step_started`` is published, which goes out while it runs
        and is stored before the step's outcome is reported.
        """
        loop = asyncio.get_running_loop()
        timeout = spec.timeout_s or self._ctx.settings.default_step_timeout_s
        deadline = loop.time() + timeout
        self.current, self._interrupt = spec, None
        self._wake.clear()
        started_at = utcnow()
        try:
            await self.runner.send(spec)  # here, not in a task: the step starts at once
        except StepProcessError as exc:
            self.current = None
            return Outcome("crashed", detail=str(exc))
        task = asyncio.create_task(self.runner.receive())
        # Claimed while the step starts (no time lost on a fresh delivery); an overtaken
        # delivery is killed as soon as the claim says so, and never announced.
        claim = self._ctx.claim(spec, delivery, self.index)
        claiming = asyncio.create_task(_take(claim))
        started = asyncio.create_task(
            self._announce(spec, claiming, delivery=delivery, step_pid=self.runner.pid)
        )
        try:
            reason = await self._watch(spec, task, deadline, claim, claiming)
            outcome = await self._outcome(task, reason, timeout)
            await _published(started, spec)
            return dataclasses.replace(outcome, started_at=started_at)
        finally:
            self.current = None
            started.cancel()  # done by now, unless the slot itself is being cancelled
            claiming.cancel()

    async def _announce(
        self, spec: StepSpec, claiming: asyncio.Task[bool], *, delivery: int, step_pid: int | None
    ) -> None:
        if await claiming:
            await self._ctx.started(spec, delivery=delivery, step_pid=step_pid)

    async def _watch(
        self,
        spec: StepSpec,
        task: asyncio.Task[StepResult],
        deadline: float,
        claim: Claim | None,
        claiming: asyncio.Task[bool],
    ) -> str | None:
        """Wait for the step; the reason it was killed (None when it ended by itself)."""
        loop = asyncio.get_running_loop()
        next_keep = loop.time() + self._ctx.heartbeat_s
        while True:
            waiting = max(0.0, min(deadline - loop.time(), self._ctx.heartbeat_s))
            waker = asyncio.create_task(self._wake.wait())
            watched = {task, waker} if claiming.done() else {task, waker, claiming}
            await asyncio.wait(watched, timeout=waiting, return_when=asyncio.FIRST_COMPLETED)
            waker.cancel()
            if task.done():
                return None
            if claiming.done() and not claiming.result():
                reason: str | None = "superseded"
            elif claim is not None and claiming.done() and loop.time() >= next_keep:
                next_keep = loop.time() + self._ctx.heartbeat_s
                reason = None if await _keep(claim) else "superseded"
            else:
                reason = None
            reason = reason or await self._reason_to_stop(spec, deadline)
            if reason is not None:
                self.runner.kill()
                return reason

    async def _reason_to_stop(self, spec: StepSpec, deadline: float) -> str | None:
        if self._interrupt is not None:
            return self._interrupt
        if asyncio.get_running_loop().time() >= deadline:
            return "timed_out"
        # Kill notices are not stored: a worker that missed one still sees the run end.
        if await self._run_is_over(spec):
            return "terminated"
        return None

    async def _outcome(
        self, task: asyncio.Task[StepResult], reason: str | None, timeout: float
    ) -> Outcome:
        try:
            result = await task
        except StepProcessError as exc:
            if reason is None:
                return Outcome("crashed", detail=str(exc))
            if reason == "timed_out":
                return Outcome("timed_out", detail=f"exceeded its timeout of {timeout:g} s")
            return Outcome(reason)  # type: ignore[arg-type]
        return Outcome("finished", result=result)  # it finished before the kill landed

    async def _finish(self, msg: Msg, spec: StepSpec, outcome: Outcome) -> None:
        try:
            # In progress until acked: recording may wait out a store outage.
            async with keep_in_progress(msg, every_s=self._ctx.heartbeat_s):
                await self._decide(msg, spec, outcome)
        except Exception:  # the attempt is not reported: its message comes back
            log.exception("slot %d: finishing %s/%s failed", self.index, spec.run_id, spec.step_id)
            with contextlib.suppress(nats.errors.Error):
                await msg.nak(delay=CRASH_REDELIVERY_DELAY_S)

    async def _settled(self) -> bool:
        """Wait until the previous step has finished (recorded, reported, acked); True."""
        task, self._finishing = self._finishing, None
        if task is not None:
            await task
        return True

    async def _decide(self, msg: Msg, spec: StepSpec, outcome: Outcome) -> None:
        ctx = self._ctx
        ctx.metrics.ended(spec, outcome.kind, outcome.result)
        if outcome.kind in ("finished", "timed_out"):
            if outcome.kind == "timed_out":
                log.warning(
                    "step %s/%s attempt %d %s: killed",
                    spec.run_id,
                    spec.step_id,
                    spec.attempt,
                    outcome.detail,
                )
            result = outcome.result or _timed_out(spec, outcome.detail, outcome.started_at)
            # The step ran (and its model calls were paid for): a store that cannot take its
            # result now is waited out, never answered by running the step again. Held here,
            # one result per slot.
            committed = await persist(
                f"recording {spec.run_id}/{spec.step_id} attempt {spec.attempt}",
                lambda: asyncio.to_thread(record_attempt, ctx.store, result),
                stopping=ctx.stopping,
            )
            await ctx.report(committed if committed.status == "succeeded" else result)
            await msg.ack()
        elif outcome.kind == "crashed":
            log.error(
                "step %s/%s attempt %d: %s; redelivering",
                spec.run_id,
                spec.step_id,
                spec.attempt,
                outcome.detail,
            )
            await msg.nak(delay=CRASH_REDELIVERY_DELAY_S)
        elif outcome.kind == "superseded":
            # A newer delivery of this attempt runs elsewhere: its worker records, reports
            # and acknowledges it. This one does none of that (an ack would end its message).
            log.warning(
                "step %s/%s attempt %d delivery %d: a newer delivery runs it; stopped here",
                spec.run_id,
                spec.step_id,
                spec.attempt,
                delivery_count(msg),
            )
        elif outcome.kind == "terminated":
            log.info("step %s/%s attempt %d terminated", spec.run_id, spec.step_id, spec.attempt)
            await msg.term()
        else:
            await msg.nak()

    async def _run_is_over(self, spec: StepSpec) -> bool:
        try:
            return await self._ctx.read(_run_is_over, self._ctx.store, spec.run_id)
        except AgenticError as exc:
            log.warning("reading run %s failed: %s", spec.run_id, exc)
            return False


async def _take(claim: Claim | None) -> bool:
    """Whether this delivery may run (True without claims or when the bucket is out of
    reach: claims never stop work on their own failure)."""
    if claim is None:
        return True
    try:
        return await claim.take()
    except nats.errors.Error as exc:
        log.warning("claiming %s failed (running anyway): %r", claim.key, exc)
        return True


async def _keep(claim: Claim) -> bool:
    try:
        return await claim.keep()
    except nats.errors.Error as exc:
        log.warning("renewing the claim %s failed: %r", claim.key, exc)
        return True


async def _published(started: asyncio.Task[None], spec: StepSpec) -> None:
    """Wait for ``step_started`` (it must be stored before the outcome's event)."""
    try:
        await started
    except AgenticError as exc:  # only while stopping: the outcome is still worth recording
        log.warning("step_started of %s/%s not published: %s", spec.run_id, spec.step_id, exc)


def _timed_out(spec: StepSpec, detail: str, started_at: datetime | None) -> StepResult:
    error = StepError(
        type=failures.TIMEOUT, message=f"attempt {spec.attempt} {detail}", retryable=True
    )
    return failed_attempt(
        spec.run_id,
        spec.step_id,
        spec.attempt,
        error,
        started_at=started_at,
        provider=spec.agent_provider.get("id"),
    )


def _run_is_over(store: RunStore, run_id: str) -> bool:
    """Whether ``run.json`` says the run finished; only its status is read (no validation
    of the whole record, on every step's critical path)."""
    doc = store.read_json(names.run_json(run_id))
    return isinstance(doc, dict) and doc.get("status") in TERMINAL_STATUSES


def _what_is_stored(store: RunStore, spec: StepSpec) -> tuple[StepResult | None, bool]:
    """The step's committed result, and whether its run is over, read in one go."""
    return store.read_result(spec.run_id, spec.step_id), _run_is_over(store, spec.run_id)
