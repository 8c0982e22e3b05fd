"""The worker service: pull steps of one pool from JetStream and run them.

``agentic worker [--pool P] [--concurrency N] [--burst]`` runs one :class:`WorkerService`::

    async with WorkerService(settings, pool="default", concurrency=2) as worker:
        await worker.run()        # until request_stop() (SIGTERM), or the queue is empty

Each of the ``concurrency`` slots (:mod:`services.worker.slot`) binds the durable consumer
``workers-<pool>``, pulls one message at a time, and runs the step in its own step process
(:mod:`services.worker.runner`) while in-progress acks keep the message from being
redelivered. Kill notices on ``agentic.control.terminate.<run_id>`` stop the matching steps.

Burst mode (Kubernetes Jobs, tests) returns once the consumer has no pending message and
the slots are idle. A stop (SIGTERM) stops fetching at once, lets running steps finish
within the grace period, then kills them and naks their messages for another worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from agentic import names
from agentic.bus import connect, heartbeat_interval, provision, pull_steps
from agentic.bus.budget import BusBudgets, lease_s
from agentic.bus.claims import Claim, claim_key
from agentic.bus.signing import SignatureError, Verifier
from agentic.bus.timeline import RunTimeline
from agentic.catalog import Catalog
from agentic.catalog.trust import CatalogCache
from agentic.contracts import (
    EventWorker,
    StepFailedData,
    StepProgressData,
    StepResult,
    StepSpec,
    StepStartedData,
    StepSucceededData,
)
from agentic.errors import BusError, ConfigError
from agentic.redact import protect_entries
from agentic.runtime import warm
from agentic.settings import Settings
from services.lifecycle import BusService, open_run_store, persist, reads_inline
from services.metrics import MetricsEndpoint, serve_metrics
from services.worker.gate import StepGate
from services.worker.metrics import WorkerMetrics
from services.worker.runner import HostedRunner, Recycling, Runner, StepRunner, ThreadHosts
from services.worker.slot import Slot

if TYPE_CHECKING:
    from agentic.store import RunStore

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_GRACE_S = 25.0
KILL_WAIT_S = 10.0
# How often a worker started before its coordinator looks for its consumer again.
CONSUMER_WAIT_S = 1.0


class WorkerContext:
    """What the slots of one worker share: settings, the bus, stores, event publishing."""

    def __init__(
        self,
        settings: Settings,
        *,
        pool: str,
        burst: bool,
        js: JetStreamContext,
        stopping: asyncio.Event,
        store: RunStore,
        gate: StepGate,
        hosts: ThreadHosts | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.metrics = metrics if metrics is not None else WorkerMetrics(pool)
        self.burst = burst
        self.js = js
        self.stopping = stopping
        self.store = store
        self.gate = gate
        self.heartbeat_s = heartbeat_interval(settings.step_ack_wait_s)
        self.timeline = RunTimeline(js, publisher="worker", max_bytes=settings.max_message_bytes)
        self._worker = EventWorker(host=socket.gethostname(), pid=os.getpid())
        self._inline = reads_inline(store)
        self.claims: KeyValue | None = None  # set once found (agentic.bus.claims)
        self.budgets: BusBudgets | None = None  # set once found (agentic.bus.budget)
        self.hosts = hosts
        self._recycling = Recycling.from_settings(settings)

    def runner(self) -> Runner:
        """Where a slot runs its steps: the shared thread hosts, or a process of its own."""
        if self.hosts is not None:
            return HostedRunner(self.hosts)
        return StepRunner(self._recycling)

    def claim(self, spec: StepSpec, delivery: int, slot: int) -> Claim | None:
        """This slot's claim to run ``delivery`` of ``spec``'s attempt (None: no bucket)."""
        if self.claims is None:
            return None
        key = claim_key(self.pool, spec.run_id, spec.step_id, spec.attempt)
        label = f"{self._worker.host}:{self._worker.pid}:{slot}"
        return Claim(self.claims, key, delivery, label)

    async def find_claims(self) -> None:
        """Bind the claims bucket; without it (an older coordinator) steps run unclaimed."""
        if not self.settings.step_claims:
            return
        try:
            self.claims = await self.js.key_value(names.CLAIMS_BUCKET)
        except (nats.errors.Error, BucketNotFoundError) as exc:
            log.warning(
                "no %s bucket (%r): a step redelivered after a NATS stall may run twice",
                names.CLAIMS_BUCKET,
                exc,
            )

    async def find_budgets(self) -> None:
        """Bind the provider budgets bucket; without it (an older coordinator) a provider's
        ``limits`` are not enforced, which the log says when a step has some."""
        try:
            kv = await self.js.key_value(names.BUDGETS_BUCKET)
        except (nats.errors.Error, BucketNotFoundError) as exc:
            log.warning(
                "no %s bucket (%r): provider limits are not enforced", names.BUDGETS_BUCKET, exc
            )
            return
        holder = f"{self._worker.host}:{self._worker.pid}"
        self.budgets = BusBudgets(kv, holder, lease_s=lease_s(self.settings))

    async def progress(self, spec: StepSpec, message: str) -> None:
        """Publish a ``step_progress`` note about an attempt this worker holds."""
        data = StepProgressData(message=message).as_data()
        msg_id = names.event_msg_id(spec.run_id, spec.step_id, spec.attempt, "step_progress")
        self.timeline.forget(spec.run_id)
        await self._publish(spec.run_id, "step_progress", spec.step_id, spec.attempt, data, msg_id)

    async def bind(self) -> JetStreamContext.PullSubscription:
        """A pull subscription of ``workers-<pool>`` (one per slot)."""
        return await persist(
            f"binding {names.workers_consumer(self.pool)}",
            lambda: _bind(self.js, self.pool),
            stopping=self.stopping,
        )

    async def queue_empty(self) -> bool:
        """True when the pool's consumer has no message waiting for a worker."""
        try:
            info = await self.js.consumer_info(
                names.STEPS_STREAM, names.workers_consumer(self.pool)
            )
        except nats.errors.Error as exc:
            log.warning("reading consumer info failed: %s", exc)
            return False
        return info.num_pending == 0

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """A store read before a step starts: on the event loop for a local store (a
        page-cache read costs less than a thread hop), in a thread for a remote one."""
        if self._inline:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    async def started(self, spec: StepSpec, *, delivery: int, step_pid: int | None) -> None:
        """Publish ``step_started`` (once per delivery)."""
        data = StepStartedData(
            worker=self._worker, step_pid=step_pid, delivery=delivery, pool=self.pool
        ).as_data()
        msg_id = names.event_msg_id(
            spec.run_id, spec.step_id, spec.attempt, "step_started", delivery=delivery
        )
        # The coordinator published step_ready since this worker last saw the run: what it
        # cached is stale, and reading the last event first saves a refused publish.
        self.timeline.forget(spec.run_id)
        await self._publish(spec.run_id, "step_started", spec.step_id, spec.attempt, data, msg_id)

    async def report(self, result: StepResult) -> None:
        """Publish ``step_succeeded`` or ``step_failed`` for a recorded attempt."""
        # How long the attempt ran, as `agentic show` will say (a key only when known).
        duration = result.timing.duration_s
        timed: dict[str, Any] = {} if duration is None else {"duration_s": duration}
        if result.status == "succeeded":
            event_type = "step_succeeded"
            payload = StepSucceededData(
                output_chars=len(result.output), worker=self._worker, **timed
            )
            data = payload.as_data()
        else:
            event_type = "step_failed"
            data = StepFailedData(error=result.error, worker=self._worker, **timed).as_data()
        msg_id = names.event_msg_id(result.run_id, result.step_id, result.attempt, event_type)
        await self._publish(result.run_id, event_type, result.step_id, result.attempt, data, msg_id)

    async def _publish(
        self,
        run_id: str,
        event_type: Any,
        step_id: str,
        attempt: int,
        data: dict[str, Any],
        msg_id: str,
    ) -> None:
        await persist(
            f"publishing {event_type} of {run_id}/{step_id}",
            lambda: self.timeline.publish(
                run_id, event_type, step_id=step_id, attempt=attempt, data=data, msg_id=msg_id
            ),
            stopping=self.stopping,
        )


class WorkerService(BusService):
    """The long-running worker (an async context manager); a stop ends fetching and gives
    the running steps the grace period.

    Args:
        settings: NATS, store and step settings.
        pool: The worker pool whose steps it runs.
        concurrency: Steps it runs at once (one step process each, or one thread each).
        isolation: ``process`` or ``thread`` (default: ``settings.step_isolation``).
        burst: Return from :meth:`run` once the queue is empty.
        store: The run store (default: ``settings.run_store_url``); a step naming another
            is refused.
        grace_s: How long a stop lets running steps finish before killing them.
        verify_steps: Run only steps (and obey only kill notices) a trusted coordinator
            signed. False only to measure what signing costs (``benchmarks/``).

    Raises:
        ConfigError: a pool name or concurrency that cannot work.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        pool: str = "default",
        concurrency: int = 1,
        burst: bool = False,
        store: RunStore | None = None,
        grace_s: float = DEFAULT_GRACE_S,
        verify_steps: bool = True,
        isolation: Literal["process", "thread"] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, got {concurrency}")
        super().__init__(settings)
        self.pool = names.check_pool(pool)
        self.concurrency = concurrency
        self.burst = burst
        self._store = store
        self._grace_s = grace_s
        self._slots: list[Slot] = []
        self._kill_notices: Verifier | None = None
        self._verify_steps = verify_steps
        self.isolation = isolation or settings.step_isolation
        self._hosts: ThreadHosts | None = None
        self.metrics = WorkerMetrics(self.pool, concurrency)
        self.metrics_endpoint: MetricsEndpoint | None = None

    async def _start(self) -> None:
        settings = self.settings
        self.metrics_endpoint = serve_metrics(settings, self.metrics.registry, "worker")
        # CrewAI loads in the fork server while the worker connects. Started from the
        # event loop's thread, which lives as long as the worker: the server dies with it.
        warm.start()
        store = self._store = await open_run_store(self._store, settings)
        catalog = CatalogCache(settings)
        protect_entries(_catalog_entries(await catalog.aget()))
        self._nc = await connect(
            settings, name=f"agentic-worker-{self.pool}", identity=f"worker-{self.pool}"
        )
        js = self._nc.jetstream()
        await self._ensure_consumer(js)
        gate = StepGate(settings, store, catalog, verify=self._verify_steps)
        if self.isolation == "thread":
            self._hosts = ThreadHosts(
                self.concurrency,
                Recycling.from_settings(settings),
            )
        self._kill_notices = gate.verifier
        ctx = WorkerContext(
            settings,
            pool=self.pool,
            burst=self.burst,
            js=js,
            stopping=self._stopping,
            store=store,
            gate=gate,
            hosts=self._hosts,
            metrics=self.metrics,
        )
        await ctx.find_claims()
        await ctx.find_budgets()
        self._slots = [Slot(i, ctx) for i in range(self.concurrency)]
        self.metrics.track(lambda: sum(slot.current is not None for slot in self._slots))
        await asyncio.gather(*(slot.start() for slot in self._slots))
        await self._nc.subscribe(names.TERMINATE_SUBJECTS, cb=self._on_terminate)

    async def run(self) -> int:
        """Serve until stopped (or, in burst mode, until the queue is empty).

        Returns:
            0, or 1 when a slot stopped on an error (its step process cannot start).
        """
        log.info(
            "worker ready: pool %s, %d slot(s), %s isolation%s",
            self.pool,
            self.concurrency,
            self.isolation,
            ", burst" if self.burst else "",
        )
        slots = [asyncio.create_task(slot.serve()) for slot in self._slots]
        for task in slots:
            task.add_done_callback(self._stop_if_failed)
        every_slot: asyncio.Future[Any] = asyncio.gather(*slots, return_exceptions=True)
        stop: asyncio.Future[Any] = asyncio.create_task(self._stopping.wait())
        await asyncio.wait([every_slot, stop], return_when=asyncio.FIRST_COMPLETED)
        if self._stopping.is_set():
            await self._drain(slots)
        stop.cancel()
        failed = [
            task.exception()
            for task in slots
            if task.done() and not task.cancelled() and task.exception() is not None
        ]
        for exc in failed:
            log.error("a worker slot stopped: %s", exc, exc_info=exc)
        return 1 if failed else 0

    def _stop_if_failed(self, task: asyncio.Task[None]) -> None:
        # A slot that stops on an error leaves the worker short: stop it all, so that its
        # supervisor (Kubernetes, agentic up) starts a fresh one.
        if not task.cancelled() and task.exception() is not None:
            self.request_stop()

    async def _drain(self, slots: list[asyncio.Task[None]]) -> None:
        log.info("worker stopping: running steps get %.0f s", self._grace_s)
        pending = [task for task in slots if not task.done()]
        if pending:
            _, pending_set = await asyncio.wait(pending, timeout=self._grace_s)
            if pending_set:
                for slot in self._slots:
                    slot.interrupt("shutdown")
                _, late = await asyncio.wait(pending_set, timeout=KILL_WAIT_S)
                for task in late:
                    task.cancel()

    async def _ensure_consumer(self, js: JetStreamContext) -> None:
        """The coordinator creates ``workers-<pool>``; a worker started first creates it
        where it may, or waits for the coordinator (a worker's own NATS identity may not
        create streams or consumers)."""
        consumer = names.workers_consumer(self.pool)
        announced = False
        while not self._stopping.is_set():
            try:
                await js.consumer_info(names.STEPS_STREAM, consumer)
                return
            except NotFoundError:
                pass
            except nats.errors.Error as exc:
                raise BusError(f"reading consumer {consumer} failed: {exc}", cause=exc) from exc
            try:
                # No waiting out an unready cluster: without the permission (the usual
                # case), a request goes unanswered and looks the same.
                await provision(js, self.settings, pools=[self.pool], settle_s=0)
                return
            except BusError as exc:
                if not announced:
                    log.info("waiting for the coordinator to create %s (%s)", consumer, exc)
                    announced = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), CONSUMER_WAIT_S)

    async def _on_terminate(self, msg: Msg) -> None:
        try:
            if self._kill_notices is not None:
                self._kill_notices.verify(msg.data, msg.headers)
            notice = json.loads(msg.data)
            run_id = notice["run_id"]
        except SignatureError as exc:
            log.warning("ignoring a kill notice on %s: %s", msg.subject, exc)
            return
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed kill notice on %s", msg.subject)
            return
        for slot in self._slots:
            spec = slot.current
            if spec is None or spec.run_id != run_id:
                continue
            if notice.get("step_id") not in (None, spec.step_id):
                continue
            if notice.get("attempt") not in (None, spec.attempt):
                continue
            log.info("terminating step %s/%s attempt %d", run_id, spec.step_id, spec.attempt)
            slot.interrupt("terminated")

    async def _close(self) -> None:
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()
        await asyncio.gather(*(slot.close() for slot in self._slots), return_exceptions=True)
        if self._hosts is not None:
            await self._hosts.close()
        await super()._close()


async def _bind(js: JetStreamContext, pool: str) -> JetStreamContext.PullSubscription:
    try:
        return await pull_steps(js, pool)
    except nats.errors.Error as exc:
        raise BusError(f"cannot bind {names.workers_consumer(pool)}: {exc}", cause=exc) from exc


def _catalog_entries(catalog: Catalog) -> list[dict[str, Any]]:
    """Every provider entry of ``catalog`` as a dict (the variables they name are secret)."""
    entries: list[Any] = [*catalog.agent_providers.values(), *catalog.mcp_providers.values()]
    return [entry.model_dump(mode="json", exclude_none=True) for entry in entries]
