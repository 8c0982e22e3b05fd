"""The coordinator service: submit, drive and cancel runs on NATS JetStream.

``agentic coordinator`` runs one :class:`CoordinatorService`::

    async with CoordinatorService(settings) as coordinator:
        await coordinator.run()          # until request_stop() (SIGTERM)

On entry it provisions the streams and consumers, rebuilds every unfinished run from the
store (a restart loses nothing), and then serves:

* ``agentic.runs.submit`` (request/reply): a RunRequest in, ``{"run_id": …}`` or
  ``{"error": …}`` out. Submitting an existing ``run_id`` starts nothing new; a ``pending``
  run that a client created in the store before submitting it is started.
* ``agentic.control.cancel`` (request/reply): ``{"run_id": …}`` in, ``{"ok": true, …}`` or
  ``{"error": …}`` out.
* the ``coordinator`` consumer of run events: workers' step events advance their runs;
* the ``coordinator-dlq`` consumer of max-deliveries advisories: the step message moves to
  ``AGENTIC_DLQ`` and its step fails, which fails its run.

Several coordinators may run for availability: one leads, holding a lease in the KV bucket
``AGENTIC_COORDINATOR`` (:mod:`agentic.bus.lease`); the others wait on standby (streams
provisioned, nothing consumed, no request answered), and the first to get the lease after
the leader stops or dies restores every unfinished run and serves. The process never
imports CrewAI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from agentic import names, tracing
from agentic.bus import connect, ensure_consumer, provision, workers_consumer_config
from agentic.bus.budget import provision_budgets
from agentic.bus.claims import provision_claims
from agentic.bus.coordination import provision_coordinator
from agentic.bus.lease import Lease
from agentic.bus.signing import Signer
from agentic.bus.timeline import RunTimeline
from agentic.redact import mask_url
from agentic.settings import Settings
from services.coordinator.control import Control
from services.coordinator.dead_letters import handle_advisory
from services.coordinator.effects import Deps
from services.coordinator.keys import keep_published, publish_signer
from services.coordinator.metrics import CoordinatorMetrics
from services.coordinator.serving import consume, respond
from services.health import Heartbeat, heartbeat_path
from services.lifecycle import BusService, open_run_store, persist, reads_inline
from services.metrics import MetricsEndpoint, serve_metrics

if TYPE_CHECKING:
    from agentic.store import RunStore

log = logging.getLogger(__name__)

CONSUMERS = {
    names.EVENTS_STREAM: names.COORDINATOR_EVENTS_CONSUMER,
    names.ADVISORIES_STREAM: names.DLQ_ADVISORIES_CONSUMER,
}
DEFAULT_GRACE_S = 10.0


class CoordinatorService(BusService):
    """The long-running coordinator (an async context manager).

    Args:
        settings: NATS, store, stream and retry settings.
        store: The run store (default: ``settings.run_store_url``).
        grace_s: How long a stop waits for requests being answered and events being handled.
        sign_steps: Sign every step and kill notice (docs/security.md). False only to measure
            what signing costs (``benchmarks/``): workers that verify refuse unsigned steps.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: RunStore | None = None,
        grace_s: float = DEFAULT_GRACE_S,
        sign_steps: bool = True,
    ) -> None:
        super().__init__(settings)
        self._store = store
        self._grace_s = grace_s
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subscriptions: list[Subscription] = []
        self._pools: set[str] = set()
        self._control: Control | None = None
        self._lease: Lease | None = None
        self._lease_lost = False
        self._signer = _signer(settings) if sign_steps else None
        self._heartbeat = Heartbeat(heartbeat_path(settings))
        self._beating: asyncio.Task[None] | None = None
        self.metrics = CoordinatorMetrics()
        self.metrics.leader.set_function(self._leads)
        self.metrics.runs_running.set_function(
            lambda: float(self._control.driving if self._control is not None else 0)
        )
        self.metrics_endpoint: MetricsEndpoint | None = None

    # --- lifecycle --------------------------------------------------------------------

    async def _start(self) -> None:
        settings = self.settings
        # Served on standby too: the leader gauge says which coordinator leads.
        self.metrics_endpoint = serve_metrics(settings, self.metrics.registry, "coordinator")
        self._store = await open_run_store(self._store, settings)
        self._beating = asyncio.create_task(self._heartbeat.run(self._stopping))
        self._nc = await connect(settings, name="agentic-coordinator", identity="coordinator")
        js = self._nc.jetstream()
        provisioned = await provision(js, settings)
        self._pools.update(
            info.config.filter_subject.rsplit(".", 1)[1]
            for info in provisioned.consumers.values()
            if info.config.filter_subject
        )
        self.metrics.queues.watch(js, self._pools, asyncio.get_running_loop())
        await provision_coordinator(js, settings)
        await provision_claims(js, settings)
        await provision_budgets(js, settings)
        identity = settings.coordinator_id or socket.gethostname()
        self._lease = await Lease.acquire(
            js,
            identity,
            settings.coordinator_lease_s,
            stopping=self._stopping,
            settings=settings,
        )
        if self._lease is None:  # stopped while on standby
            return
        log.info("coordinator %r leads", identity)
        if self._signer is not None:
            await publish_signer(
                self.store,
                self._signer,
                identity,
                stopping=self._stopping,
                max_age_s=settings.events_max_age_s,
            )
        self._control = Control(settings, self._deps(js))
        await self._control.restore()
        await self._subscribe()

    async def run(self) -> int:
        """Serve until :meth:`request_stop`; returns the exit code: 0, or 1 when another
        coordinator took the lease (this one stopped at once, without draining)."""
        if self._lease is None:
            return 0
        js = self._nc.jetstream()
        # Renewed until the drain below is over: a standby must not lead while this one
        # still handles what it holds.
        drained = asyncio.Event()
        keeper = asyncio.create_task(self._keep_lease(self._lease, drained))
        republisher = asyncio.create_task(
            keep_published(
                self.store,
                self._signer,
                self._lease.identity,
                stopping=self._stopping,
                max_age_s=self.settings.events_max_age_s,
            )
            if self._signer is not None
            else self._stopping.wait()
        )
        loops = [
            asyncio.create_task(self._feed(js, names.EVENTS_STREAM, self._on_event)),
            asyncio.create_task(self._feed(js, names.ADVISORIES_STREAM, self._on_advisory)),
        ]
        log.info(
            "coordinator ready (NATS %s, store %s)",
            mask_url(self._nc.connected_url.geturl()),
            mask_url(self.store.url),
        )
        await self._stopping.wait()
        log.info("coordinator stopping")
        for sub in self._subscriptions:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        # The loops finish the batch in hand; unfinished work is redelivered to the next start.
        # A coordinator that lost its lease stops at once: another one leads now.
        grace_s = 0.0 if self._lease_lost else self._grace_s
        done, pending = await asyncio.wait([*loops, *self._tasks], timeout=grace_s)
        for task in pending:
            task.cancel()
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                log.error("coordinator task failed: %r", task.exception())
        drained.set()
        await keeper
        republisher.cancel()
        if self._lease_lost:
            return 1
        await self._lease.release()
        return 0

    async def _keep_lease(self, lease: Lease, drained: asyncio.Event) -> None:
        """Renew the lease until ``drained``; stop the service at once if the lease is lost
        (or cannot be kept: an unexpected error counts as lost)."""
        while not drained.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(drained.wait(), timeout=lease.renew_every_s)
            if drained.is_set():
                return
            try:
                still_ours = await lease.renew()
            except nats.errors.Error as exc:  # NATS out of reach: the lease may still be ours
                log.warning("renewing the coordinator lease failed: %s", exc)
                continue
            except Exception:
                log.exception("renewing the coordinator lease failed")
                still_ours = False
            if not still_ours:
                log.error("another coordinator took the lease: stopping now")
                self._lease_lost = True
                self._stopping.set()
                return

    @property
    def store(self) -> RunStore:
        assert self._store is not None
        return self._store

    def _leads(self) -> float:
        """The leader gauge: 1 while this coordinator surely holds the lease."""
        lease = self._lease
        return float(lease is not None and not self._lease_lost and lease.valid())

    async def _close(self) -> None:
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()
        self._stopping.set()  # ends the heartbeat, whose file goes with it
        if self._beating is not None:
            with contextlib.suppress(Exception):
                await self._beating
        if self._control is not None:
            self._control.close()
        for task in list(self._tasks):
            task.cancel()
        if self._lease is not None and not self._lease_lost:
            # Stopped before run() (it releases the lease itself): let a standby lead now.
            await self._lease.release()
        await super()._close()

    def _deps(self, js: JetStreamContext) -> Deps:
        return Deps(
            settings=self.settings,
            store=self.store,
            js=js,
            nc=self._nc,
            timeline=RunTimeline(
                js, publisher="coordinator", max_bytes=self.settings.max_message_bytes
            ),
            stopping=self._stopping,
            ensure_pool=lambda pool: self._ensure_pool(js, pool),
            spawn=self._spawn,
            finished=lambda run_id: None,
            inline_reads=reads_inline(self.store),
            leading=lambda: self._lease is not None and self._lease.valid(),
            signer=self._signer,
            metrics=self.metrics,
        )

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("coordinator task failed", exc_info=task.exception())

    async def _ensure_pool(self, js: JetStreamContext, pool: str) -> None:
        """Create ``workers-<pool>`` before the first step of the pool is published: KEDA
        must never look at a consumer that does not exist."""
        if pool in self._pools:
            return
        config = workers_consumer_config(self.settings, pool)
        await persist(
            f"creating consumer {config.durable_name}",
            lambda: ensure_consumer(js, names.STEPS_STREAM, config),
            stopping=self._stopping,
        )
        self._pools.add(pool)

    # --- requests ---------------------------------------------------------------------

    async def _subscribe(self) -> None:
        for subject, handler in (
            (names.SUBMIT_SUBJECT, self._answer_submit),
            (names.CANCEL_SUBJECT, self._answer_cancel),
        ):
            sub = await self._nc.subscribe(subject, cb=self._in_task(handler))
            self._subscriptions.append(sub)

    def _in_task(
        self, handler: Callable[[Msg], Coroutine[Any, Any, None]]
    ) -> Callable[[Msg], Awaitable[None]]:
        # nats-py runs one callback at a time per subscription: a slow request (a goal being
        # planned) must not hold up the others.
        async def callback(msg: Msg) -> None:
            self._spawn(handler(msg))

        return callback

    async def _answer_submit(self, msg: Msg) -> None:
        control = self._control
        assert control is not None
        # A client's trace context names the run's trace (agentic.tracing: parsed strictly,
        # only ever a parent id).
        with tracing.carried(tracing.from_headers(msg.headers)):
            await respond(msg, lambda: control.submit(msg.data))

    async def _answer_cancel(self, msg: Msg) -> None:
        control = self._control
        assert control is not None
        await respond(msg, lambda: control.cancel(msg.data))

    # --- consumers --------------------------------------------------------------------

    async def _feed(
        self, js: JetStreamContext, stream: str, handle: Callable[[Msg], Awaitable[None]]
    ) -> None:
        durable = CONSUMERS[stream]
        await consume(
            self._nc, js, stream, durable, handle, stopping=self._stopping, beat=self._heartbeat
        )

    async def _on_event(self, msg: Msg) -> None:
        control = self._control
        assert control is not None
        await control.on_event_message(msg)
        with contextlib.suppress(nats.errors.Error):
            await msg.ack()

    async def _on_advisory(self, msg: Msg) -> None:
        control = self._control
        assert control is not None
        try:
            handled = await handle_advisory(msg, control)
        except Exception:  # an advisory that cannot be handled comes back after ack_wait
            log.exception("handling a max-deliveries advisory failed")
            handled = False
        if handled:
            with contextlib.suppress(nats.errors.Error):
                await msg.ack()


def _signer(settings: Settings) -> Signer:
    """The key that signs this coordinator's steps: the configured one, or a fresh one."""
    if settings.step_signing_seed_file:
        return Signer.from_file(settings.step_signing_seed_file)
    return Signer.generate()
