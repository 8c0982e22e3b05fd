"""The scaler service: burst worker Jobs for one pool, for clusters without KEDA.

``agentic scaler --pool P`` runs one :class:`ScalerService`::

    async with ScalerService(settings, pool="default") as scaler:
        await scaler.run()          # until request_stop() (SIGTERM)

Every ``AGENTIC_SCALER_POLL_INTERVAL_S`` it applies KEDA's ``default`` ScaledJob rule
(:func:`agentic.k8s.scaler_rule.jobs_to_create`): it reads the ``workers-<pool>`` consumer's
``num_pending`` and ``num_ack_pending`` from JetStream, counts the pool's unfinished worker
Jobs, and creates Jobs running ``agentic worker --burst --pool P`` up to
``AGENTIC_SCALER_MAX_JOBS``. A consumer that does not exist is a refusal with a warning, never
a reason to start the maximum. Finished worker Jobs are deleted (Foreground, so their pods
go too), except the last few failed ones, kept for ``kubectl logs``.

To react faster than the poll, it also subscribes (core NATS) to the coordinator's
queued-work notices ``agentic.control.queued.<pool>`` (no payload: the scaler's NATS identity
may not read steps): a notice wakes an early round of the same rule, so a Job is usually
created one NATS round trip and one API call after the step was queued. Rounds are at least
``min_round_gap_s`` apart, so a flood of messages cannot flood the API server.

On SIGTERM it stops creating Jobs and returns; the worker Jobs it started finish their burst.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

import nats.errors
from nats.js.errors import NotFoundError

from agentic import names, tracing
from agentic.backends.kubernetes import api as k8s_api
from agentic.bus import connect
from agentic.errors import AgenticError
from agentic.k8s.failures import job_succeeded
from agentic.k8s.jobs import worker_job_manifest, worker_job_name, worker_selector
from agentic.k8s.scaler_rule import (
    ConsumerLag,
    ScaleDecision,
    count_running,
    job_finished,
    jobs_to_create,
)
from agentic.settings import Settings
from services.lifecycle import BusService
from services.metrics import MetricsEndpoint, serve_metrics
from services.scaler.metrics import ScalerMetrics

log = logging.getLogger(__name__)

MIN_ROUND_GAP_S = 0.1
FAILED_HISTORY = 5  # failed worker Jobs kept for `kubectl logs` (KEDA's failedJobsHistoryLimit)
CONSUMER_INFO_TIMEOUT_S = 5.0
RECHECK_DELAYS_S = (0.02, 0.05)


class ScalerService(BusService):
    """Creates and cleans up the worker Jobs of one pool (an async context manager).

    Args:
        settings: NATS, Kubernetes and scaler settings (the worker Jobs' settings too).
        pool: The worker pool to scale.
        api_client: A ``kubernetes.client.ApiClient``; by default one from the in-cluster
            service account or the kubeconfig.
        lag_per_job: Messages one Job is expected to take (KEDA's ``lagThreshold``).
        activation_lag: No Jobs while the lag is at most this (``activationLagThreshold``).
        min_round_gap_s: Least time between two rounds.
        wake_on_publish: Start a round early when a step is published on the pool's
            subject (off: rounds only every poll interval).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        pool: str,
        api_client: Any = None,
        lag_per_job: int = 1,
        activation_lag: int = 0,
        min_round_gap_s: float = MIN_ROUND_GAP_S,
        wake_on_publish: bool = True,
    ) -> None:
        names.check_pool(pool)
        # Fails fast on settings a worker Job cannot run with (no NATS URL, unreachable store).
        worker_job_manifest(pool, settings, name=worker_job_name(pool, "check"))
        super().__init__(settings)
        self.pool = pool
        self._api_client = api_client
        self._lag_per_job = lag_per_job
        self._activation_lag = activation_lag
        self._min_gap_s = min_round_gap_s
        self._wake_on_publish = wake_on_publish
        self._wake = asyncio.Event()
        self._new_step = False
        self._batch: Any = None
        self._refused = False
        self.created = 0
        """Worker Jobs created so far."""
        self.last_decision: ScaleDecision | None = None
        self.metrics = ScalerMetrics(pool)
        self.metrics_endpoint: MetricsEndpoint | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def _start(self) -> None:
        from kubernetes import client

        self.metrics_endpoint = serve_metrics(self.settings, self.metrics.registry, "scaler")
        if self._api_client is None:
            self._api_client = await asyncio.to_thread(k8s_api.load_api_client)
        self._batch = client.BatchV1Api(self._api_client)
        self._nc = await connect(
            self.settings, name=f"agentic-scaler-{self.pool}", identity="scaler"
        )
        if self._wake_on_publish:
            # Only a wake-up: the rule reads the consumer, never counts these messages.
            await self._nc.subscribe(names.queued_subject(self.pool), cb=self._on_step)

    def request_stop(self) -> None:
        """Stop creating Jobs and let :meth:`run` return (SIGTERM does this)."""
        super().request_stop()
        self._wake.set()

    async def _close(self) -> None:
        if self.metrics_endpoint is not None:
            self.metrics_endpoint.stop()
        await super()._close()

    async def run(self) -> int:
        """Scale every poll interval (or sooner, on a new step) until stopped; returns 0."""
        log.info(
            "scaler of pool %s ready: every %.1f s, at most %d worker Jobs",
            self.pool,
            self.settings.scaler_poll_interval_s,
            self.settings.scaler_max_jobs,
        )
        while not self._stopping.is_set():
            started = time.monotonic()
            woken, self._new_step = self._new_step, False
            self._wake.clear()
            try:
                decision = await self.scale_once()
                if woken:
                    await self._recheck(decision)
            except Exception as exc:  # NATS or the API server away: the next round retries
                log.warning("scaler round failed: %s: %s", type(exc).__name__, exc)
                self.metrics.round_failed()
            await self._pause(started)
        log.info("scaler of pool %s stopped; running worker Jobs finish their burst", self.pool)
        return 0

    async def _recheck(self, decision: ScaleDecision) -> None:
        """Look again shortly when a new step woke a round that found nothing to do.

        The copy of a message reaches a core subscriber before JetStream may have stored
        it, so the consumer's counts can lag the wake-up by a moment. Only when Jobs could
        still be created: at the maximum, a flood of messages costs no extra rounds.
        """
        for delay in RECHECK_DELAYS_S:
            if (
                decision.create
                or decision.refused
                or decision.wanted >= self.settings.scaler_max_jobs
            ):
                return
            await asyncio.sleep(delay)
            decision = await self.scale_once()

    async def _pause(self, started: float) -> None:
        """Sleep until the next poll, a new step message or a stop; never under the gap."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.settings.scaler_poll_interval_s)
        gap = self._min_gap_s - (time.monotonic() - started)
        if gap > 0 and not self._stopping.is_set():
            await asyncio.sleep(gap)

    async def _on_step(self, msg: Any) -> None:
        self._new_step = True
        self._wake.set()

    # --- one round --------------------------------------------------------------------------

    async def scale_once(self) -> ScaleDecision:
        """Apply the rule once: clean finished Jobs, create the missing ones."""
        lag = await self.consumer_lag()
        jobs, _ = await asyncio.to_thread(
            k8s_api.list_objects,
            self._batch.list_namespaced_job,
            self.settings.k8s_namespace,
            worker_selector(self.pool),
        )
        await asyncio.to_thread(self._clean, jobs)
        decision = jobs_to_create(
            lag,
            running=count_running(j for j in jobs if not j["metadata"].get("deletionTimestamp")),
            max_jobs=self.settings.scaler_max_jobs,
            lag_per_job=self._lag_per_job,
            activation_lag=self._activation_lag,
        )
        self._report(decision)
        self.metrics.decided(decision)
        for _ in range(decision.create):
            if self._stopping.is_set():
                break
            await asyncio.to_thread(self._create_job)
        self.last_decision = decision
        return decision

    async def consumer_lag(self) -> ConsumerLag | None:
        """The pool consumer's pending and ack-pending counts; None when it does not exist."""
        js = self._nc.jetstream()
        try:
            info = await js.consumer_info(
                names.STEPS_STREAM,
                names.workers_consumer(self.pool),
                timeout=CONSUMER_INFO_TIMEOUT_S,
            )
        except NotFoundError:
            return None
        return ConsumerLag(
            num_pending=info.num_pending or 0, num_ack_pending=info.num_ack_pending or 0
        )

    def _report(self, decision: ScaleDecision) -> None:
        if decision.refused:
            if not self._refused:
                log.warning(
                    "pool %s: consumer %s does not exist in stream %s: refusing to scale "
                    "(the coordinator creates it when it starts)",
                    self.pool,
                    names.workers_consumer(self.pool),
                    names.STEPS_STREAM,
                )
            self._refused = True
            return
        if self._refused:
            log.info("pool %s: consumer found, scaling again", self.pool)
        self._refused = False
        if decision.create:
            log.info(
                "pool %s: creating %d worker Job(s): %s",
                self.pool,
                decision.create,
                decision.reason,
            )

    def _create_job(self) -> str:
        for _ in range(3):  # a name clash is a 409: take another token
            name = worker_job_name(self.pool, secrets.token_hex(5))
            try:
                manifest = worker_job_manifest(
                    self.pool, self.settings, name=name, trace_env=tracing.job_env()
                )
                k8s_api.create_job(self._batch, manifest)
            except Exception as exc:
                if k8s_api.api_status(exc) != 409:
                    raise
                continue
            self.created += 1
            self.metrics.job_created()
            return name
        raise RuntimeError("could not find a free worker Job name")

    def _clean(self, jobs: list[dict[str, Any]]) -> None:
        """Delete finished worker Jobs, keeping the newest failed ones for their logs."""
        finished = [
            j for j in jobs if job_finished(j) and not j["metadata"].get("deletionTimestamp")
        ]
        failed = sorted(
            (j for j in finished if not job_succeeded(j)),
            key=lambda j: j["metadata"].get("creationTimestamp", ""),
        )
        keep = (
            {j["metadata"]["name"] for j in failed[-FAILED_HISTORY:]} if FAILED_HISTORY else set()
        )
        for job in finished:
            name = job["metadata"]["name"]
            if name not in keep:
                k8s_api.delete_job(self._batch, self.settings.k8s_namespace, name)


async def problems(settings: Settings, *, pool: str, api_client: Any = None) -> list[str]:
    """What keeps the scaler of ``pool`` from working (``agentic scaler --check``)."""
    found: list[str] = []
    try:
        nc = await asyncio.wait_for(
            connect(settings, name="agentic-scaler-check", identity="scaler"), 8.0
        )
    except (AgenticError, TimeoutError) as exc:
        found.append(str(exc) or "NATS did not answer in time")
    else:
        try:
            await nc.jetstream().consumer_info(names.STEPS_STREAM, names.workers_consumer(pool))
        except NotFoundError:
            found.append(
                f"consumer {names.workers_consumer(pool)} does not exist: the scaler refuses "
                "to scale until the coordinator creates it"
            )
        except nats.errors.Error as exc:
            found.append(f"JetStream did not answer: {type(exc).__name__}: {exc}")
        finally:
            await nc.close()
    found += await asyncio.to_thread(_api_problems, settings, pool, api_client)
    return found


def _api_problems(settings: Settings, pool: str, api_client: Any) -> list[str]:
    from kubernetes import client

    try:
        api = api_client if api_client is not None else k8s_api.load_api_client()
        k8s_api.list_objects(
            client.BatchV1Api(api).list_namespaced_job,
            settings.k8s_namespace,
            worker_selector(pool),
        )
    except AgenticError as exc:
        return [str(exc)]
    except Exception as exc:  # an API error or an unreachable server, said in one line
        return [f"cannot list Jobs in namespace {settings.k8s_namespace}: {exc}".splitlines()[0]]
    return []
