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
not a StepSpec                         **term**, reason logged
=====================================  ============================================
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import nats.errors
from nats.aio.msg import Msg

from agentic.backends.execute import record_attempt
from agentic.backends.outcome import failed_attempt
from agentic.bus import decode_spec, delivery_count, fetch_one, keep_in_progress
from agentic.contracts import RunRecord, StepError, StepResult, StepSpec
from agentic.coordinator import TIMEOUT_ERROR_TYPE
from agentic.errors import AgenticError, DecodeError, UnknownRunError
from services.worker.runner import StepProcessError, StepRunner

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

    kind: Literal["finished", "timed_out", "crashed", "terminated", "shutdown"]
    result: StepResult | None = None
    detail: str = ""


class Slot:
    """Runs one step at a time in its own step process.

    Args:
        index: The slot's number (for logs).
        ctx: What the slots of a worker share.
    """

    def __init__(self, index: int, ctx: WorkerContext) -> None:
        self.index = index
        self._ctx = ctx
        self.runner = StepRunner()
        self.current: StepSpec | None = None
        self._interrupt: Interrupt | None = None
        self._wake = asyncio.Event()

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
        while not ctx.stopping.is_set():
            if not self.runner.running:
                # Killed or crashed with its last step. A step process that cannot start
                # stops the slot (StepProcessError): every step would fail the same way.
                await self.runner.restart()
            try:
                msg = await fetch_one(sub, timeout=FETCH_TIMEOUT_S)
            except nats.errors.Error as exc:  # disconnected: nats-py reconnects on its own
                log.warning("slot %d: fetching failed: %s", self.index, exc)
                await asyncio.sleep(FETCH_TIMEOUT_S)
                continue
            if msg is None:
                if ctx.burst and await ctx.queue_empty():
                    return
                continue
            try:
                await self._handle(msg)
            except Exception:  # one bad step must not stop the slot: the message comes back
                log.exception("slot %d: handling %s failed", self.index, msg.subject)
                with contextlib.suppress(nats.errors.Error):
                    await msg.nak(delay=CRASH_REDELIVERY_DELAY_S)

    # --- one message ----------------------------------------------------------------------

    async def _handle(self, msg: Msg) -> None:
        ctx = self._ctx
        try:
            spec = decode_spec(msg, max_bytes=ctx.settings.max_message_bytes)
        except DecodeError as exc:
            log.error("terminating a step message that is not a StepSpec: %s", exc)
            await msg.term()
            return
        store = await ctx.store_for(spec.store_url)
        committed, record = await asyncio.to_thread(_what_is_stored, store, spec)
        if committed is not None:  # a duplicate delivery: say it again, run nothing
            await ctx.report(committed)
            await msg.ack()
            return
        if record is not None and record.is_terminal:
            log.info("run %s is over: dropping step %s", spec.run_id, spec.step_id)
            await msg.term()
            return
        await ctx.started(spec, delivery=delivery_count(msg), step_pid=self.runner.pid)
        async with keep_in_progress(msg, every_s=ctx.heartbeat_s):
            outcome = await self._execute(spec)
        await self._decide(msg, spec, outcome)

    async def _execute(self, spec: StepSpec) -> Outcome:
        """Run the step in the step process, watching its timeout and its run."""
        loop = asyncio.get_running_loop()
        timeout = spec.timeout_s or self._ctx.settings.default_step_timeout_s
        deadline = loop.time() + timeout
        self.current, self._interrupt = spec, None
        self._wake.clear()
        task = asyncio.create_task(self.runner.run(spec))
        reason: str | None = None
        try:
            while True:
                waiting = max(0.0, min(deadline - loop.time(), self._ctx.heartbeat_s))
                waker = asyncio.create_task(self._wake.wait())
                await asyncio.wait(
                    {task, waker}, timeout=waiting, return_when=asyncio.FIRST_COMPLETED
                )
                waker.cancel()
                if task.done():
                    break
                reason = await self._reason_to_stop(spec, deadline)
                if reason is not None:
                    self.runner.kill()
                    break
            return await self._outcome(task, reason, timeout)
        finally:
            self.current = None

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

    async def _decide(self, msg: Msg, spec: StepSpec, outcome: Outcome) -> None:
        ctx = self._ctx
        if outcome.kind in ("finished", "timed_out"):
            if outcome.kind == "timed_out":
                log.warning(
                    "step %s/%s attempt %d %s: killed",
                    spec.run_id,
                    spec.step_id,
                    spec.attempt,
                    outcome.detail,
                )
            result = outcome.result or _timed_out(spec, outcome.detail)
            store = await ctx.store_for(spec.store_url)
            committed = await asyncio.to_thread(record_attempt, store, result)
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
        elif outcome.kind == "terminated":
            log.info("step %s/%s attempt %d terminated", spec.run_id, spec.step_id, spec.attempt)
            await msg.term()
        else:
            await msg.nak()

    async def _run_is_over(self, spec: StepSpec) -> bool:
        try:
            store = await self._ctx.store_for(spec.store_url)
            record = await asyncio.to_thread(_read_or_none, store, spec.run_id)
        except AgenticError as exc:
            log.warning("reading run %s failed: %s", spec.run_id, exc)
            return False
        return record is not None and record.is_terminal


def _timed_out(spec: StepSpec, detail: str) -> StepResult:
    error = StepError(
        type=TIMEOUT_ERROR_TYPE, message=f"attempt {spec.attempt} {detail}", retryable=True
    )
    return failed_attempt(spec.run_id, spec.step_id, spec.attempt, error)


def _read_or_none(store: RunStore, run_id: str) -> RunRecord | None:
    try:
        return store.read_run(run_id)
    except UnknownRunError:
        return None


def _what_is_stored(store: RunStore, spec: StepSpec) -> tuple[StepResult | None, RunRecord | None]:
    """The step's committed result and its run's record, read in one go."""
    return store.read_result(spec.run_id, spec.step_id), _read_or_none(store, spec.run_id)
