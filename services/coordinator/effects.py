"""The I/O of one run's transitions: the store, run events, step messages, kill notices.

:class:`RunEffects` is what a :class:`~services.coordinator.runs.RunDriver` does to the
world. Each operation waits out an unreachable store or NATS server (``persist``): a
transition is never half lost because the bus restarted. Store calls run in threads, off
the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from agentic import failures, names
from agentic.bus import publish_step
from agentic.bus.follow import started_attempts
from agentic.bus.signing import Signer
from agentic.bus.timeline import RunTimeline
from agentic.contracts import RunRecord, StepError, StepSpec, SucceededData
from agentic.coordinator import CommitFailure, Emit, RecordFailure
from agentic.errors import ConfigError, MessageTooLargeError
from agentic.recording.attempts import commit_failure, record_failure
from agentic.settings import Settings
from services.coordinator.metrics import CoordinatorMetrics
from services.lifecycle import persist

if TYPE_CHECKING:
    from agentic.store import RunStore

log = logging.getLogger(__name__)

T = TypeVar("T")

PUBLISH_TIMEOUT_S = 5.0


class DriverEffects(Protocol):
    """What a :class:`~services.coordinator.runs.RunDriver` does to the world: the store,
    run events, step messages, kill notices. :class:`RunEffects` does it over NATS;
    :class:`~services.coordinator.memory.MemoryEffects` in memory, for tests."""

    queued: dict[int, tuple[str, int]]

    async def io(self, what: str, fn: Callable[..., T], *args: Any) -> T: ...
    async def read(self, what: str, fn: Callable[..., T], *args: Any) -> T: ...
    async def write_run(self, record: RunRecord, specs: Sequence[StepSpec] = ()) -> None: ...
    async def write_specs(self, specs: Sequence[StepSpec]) -> None: ...
    async def publish(self, command: Emit) -> None: ...
    async def ready(self, command: Emit, spec: StepSpec) -> StepError | None: ...
    async def dispatch(self, spec: StepSpec) -> StepError | None: ...
    async def send_kill(self, step_id: str, attempt: int) -> None: ...
    async def record_failure(
        self,
        command: RecordFailure,
        *,
        queued_at: datetime | None = None,
        started_at: datetime | None = None,
    ) -> None: ...
    async def commit_failure(self, command: CommitFailure) -> None: ...
    async def started_attempts(self) -> dict[str, int]: ...
    def forget_queued(self, step_id: str) -> None: ...


@dataclass
class Deps:
    """What every run driver shares with the coordinator service."""

    settings: Settings
    store: RunStore
    stopping: asyncio.Event
    spawn: Callable[[Coroutine[Any, Any, Any]], None]
    finished: Callable[[str], None]
    # NATS (None with in-memory effects).
    js: JetStreamContext | None = None
    nc: NATS | None = None
    timeline: RunTimeline | None = None
    ensure_pool: Callable[[str], Awaitable[None]] = lambda pool: _nothing()
    # Signs steps and kill notices (None only for measurements: workers then refuse them
    # unless they verify nothing either).
    signer: Signer | None = None
    inline_reads: bool = False
    # Whether this coordinator surely still holds the leader's lease (timers act only then).
    leading: Callable[[], bool] = lambda: True
    # Builds the effects of one run (NATS by default).
    effects: Callable[[str, Deps], DriverEffects] = field(default_factory=lambda: RunEffects)
    # What the run drivers count (docs/observability.md, "Metrics").
    metrics: CoordinatorMetrics = field(default_factory=CoordinatorMetrics)


async def _nothing() -> None:
    return None


class RunEffects:
    """The effects of one run's transitions.

    Args:
        run_id: The run.
        deps: The coordinator's connections, store and settings.
    """

    def __init__(self, run_id: str, deps: Deps) -> None:
        if deps.js is None or deps.nc is None or deps.timeline is None:
            raise ValueError("RunEffects needs the coordinator's NATS connection")
        self.run_id = run_id
        self.deps = deps
        self.js, self.nc, self.timeline = deps.js, deps.nc, deps.timeline
        # Stream sequence of each step's latest queued message -> (step, attempt): a worker
        # that refuses a message is known by that sequence only (the MSG_TERMINATED advisory).
        self.queued: dict[int, tuple[str, int]] = {}
        self._queued_seq: dict[str, int] = {}

    async def io(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """A blocking store call off the event loop, retried while the store is unreachable."""
        return await persist(
            f"run {self.run_id}: {what}",
            lambda: asyncio.to_thread(fn, *args),
            stopping=self.deps.stopping,
        )

    async def read(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """A store read on a transition's critical path: on the event loop for a local store
        (:func:`~services.lifecycle.reads_inline`), else as :meth:`io`."""
        if not self.deps.inline_reads:
            return await self.io(what, fn, *args)

        async def now() -> T:
            return fn(*args)

        return await persist(f"run {self.run_id}: {what}", now, stopping=self.deps.stopping)

    async def write_run(self, record: RunRecord, specs: Sequence[StepSpec] = ()) -> None:
        """Write the ``spec.json`` of the attempts just dispatched, then ``run.json``, in one
        trip to a thread (each write is fsync'd)."""
        await self.io("writing run.json", _write_run, self.deps.store, record, specs)

    async def write_specs(self, specs: Sequence[StepSpec]) -> None:
        """Write the ``spec.json`` of the attempts just dispatched, in one trip to a thread."""
        await self.io("writing spec.json", _write_run, self.deps.store, None, specs)

    async def publish(self, command: Emit) -> None:
        """Publish one run event (its ``seq`` is the run's next)."""
        deps = self.deps
        data = _bounded(command.data, deps.settings.max_message_bytes)

        async def publish() -> None:
            await self.timeline.publish(
                self.run_id,
                command.type,
                step_id=command.step_id,
                attempt=command.attempt,
                data=data,
            )

        try:
            await persist(
                f"publishing {command.type} of run {self.run_id}", publish, stopping=deps.stopping
            )
        except MessageTooLargeError as exc:
            log.error("run %s: event %s not published: %s", self.run_id, command.type, exc)

    async def ready(self, command: Emit, spec: StepSpec) -> StepError | None:
        """Publish ``step_ready`` and queue the step it announces, without waiting in between.

        Both messages go out on the coordinator's connection back to back, the event first:
        nats-server handles a connection's messages in order, so the event is stored before
        a worker can take the step and report it started, and the step does not wait for the
        event's acknowledgement. (The run's last event is read first when it is not cached,
        so that nothing delays the event's message behind the step's.)
        """
        deps = self.deps
        await persist(
            f"reading the last event of run {self.run_id}",
            lambda: self.timeline.prime(self.run_id),
            stopping=deps.stopping,
        )
        published, dispatched = await asyncio.gather(
            self.publish(command), self.dispatch(spec), return_exceptions=True
        )
        if isinstance(published, BaseException):
            raise published
        if isinstance(dispatched, BaseException):
            raise dispatched
        return dispatched

    async def dispatch(self, spec: StepSpec) -> StepError | None:
        """Queue the attempt; the error of a step that never can be. (Workers take the spec
        from the message: its ``spec.json``, the record, is written with the snapshot.)"""
        deps = self.deps
        try:
            await deps.ensure_pool(spec.pool)
            ack = await persist(
                f"publishing step {spec.step_id} of run {spec.run_id}",
                lambda: publish_step(
                    self.js,
                    spec,
                    max_bytes=deps.settings.max_message_bytes,
                    timeout=PUBLISH_TIMEOUT_S,
                    signer=deps.signer,
                ),
                stopping=deps.stopping,
            )
        except (MessageTooLargeError, ConfigError) as exc:
            return StepError(type=failures.NOT_PUBLISHABLE, message=str(exc), retryable=False)
        self._remember_queued(spec.step_id, spec.attempt, ack.seq)
        await self._notify_queued(spec.pool)
        return None

    def forget_queued(self, step_id: str) -> None:
        """The step's message is no longer waiting (it started, or its step ended)."""
        seq = self._queued_seq.pop(step_id, None)
        if seq is not None:
            self.queued.pop(seq, None)

    def _remember_queued(self, step_id: str, attempt: int, seq: int) -> None:
        self.forget_queued(step_id)
        self._queued_seq[step_id] = seq
        self.queued[seq] = (step_id, attempt)

    async def _notify_queued(self, pool: str) -> None:
        """Tell scalers a step of ``pool`` is queued (core NATS, no payload, best effort)."""
        try:
            await self.nc.publish(names.queued_subject(pool), b"")
        except Exception as exc:  # best effort: scalers also poll the consumer
            log.debug("queued-work notice for pool %s not sent: %s", pool, exc)

    async def send_kill(self, step_id: str, attempt: int) -> None:
        """Ask the worker running ``attempt`` of ``step_id`` to kill it (best effort)."""
        notice = {"run_id": self.run_id, "step_id": step_id, "attempt": attempt}
        payload = json.dumps(notice).encode()
        try:
            signer = self.deps.signer
            await self.nc.publish(
                names.terminate_subject(self.run_id),
                payload,
                headers=signer.headers(payload) if signer is not None else None,
            )
        except Exception as exc:  # best effort: workers also watch run.json
            log.warning("run %s: kill notice for %s not sent: %s", self.run_id, step_id, exc)

    async def record_failure(
        self,
        command: RecordFailure,
        *,
        queued_at: datetime | None = None,
        started_at: datetime | None = None,
    ) -> None:
        """Write the attempt file of a failure no worker could record (timeout, DLQ)."""
        store = self.deps.store
        await self.io(
            "writing a failed attempt",
            functools.partial(record_failure, queued_at=queued_at, started_at=started_at),
            store,
            self.run_id,
            command,
        )

    async def commit_failure(self, command: CommitFailure) -> None:
        """Commit the step's last failure as its result (no retry will follow)."""
        store = self.deps.store
        await self.io("committing a failed step", commit_failure, store, self.run_id, command)

    async def started_attempts(self) -> dict[str, int]:
        """The highest attempt of each step a worker reported started (its events)."""
        deps = self.deps
        return await persist(
            f"reading the started steps of run {self.run_id}",
            lambda: started_attempts(
                self.js, self.run_id, max_bytes=deps.settings.max_message_bytes
            ),
            stopping=deps.stopping,
        )


def _write_run(store: RunStore, record: RunRecord | None, specs: Sequence[StepSpec]) -> None:
    for spec in specs:
        store.write_spec(spec)
    if record is not None:
        store.write_run(record)


def _bounded(data: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """Event data that fits a message: a long final output is cut (run.json keeps it all)."""
    output = data.get("output")
    limit = max_bytes // 2
    if isinstance(output, str) and len(output.encode()) > limit:
        cut = output.encode()[:limit].decode(errors="ignore")
        return {**data, **SucceededData(output=cut, output_truncated=True).as_data()}
    return data
