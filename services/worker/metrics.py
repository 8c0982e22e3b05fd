"""A worker's Prometheus metrics: its slots, and what became of the attempts it handled.

The worker keeps them in a registry of its own (:attr:`WorkerMetrics.registry`), served by
:func:`services.metrics.serve_metrics`; its slots report each attempt's end
(:meth:`WorkerMetrics.ended`) and the steps in flight are counted when Prometheus scrapes.
Tokens, cost and run outcomes are the coordinator's: it sees every attempt of every worker,
including those of burst workers that exited before a scrape.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agentic import failures
from agentic.contracts import StepResult, StepSpec
from services.metrics import STEP_BUCKETS, BoundedLabel

ERROR_TYPES = {"timed_out": failures.TIMEOUT, "crashed": failures.CRASHED}
"""The error type of the slot's outcomes that are failures without a result."""


class WorkerMetrics:
    """The metrics of one worker of ``pool``.

    Args:
        pool: The worker's pool (a label of every metric).
        concurrency: Its slots.
        registry: Where the metrics are registered (default: a new one).
    """

    def __init__(
        self, pool: str, concurrency: int = 1, registry: CollectorRegistry | None = None
    ) -> None:
        self.pool = pool
        self.registry = registry = registry if registry is not None else CollectorRegistry()
        self.in_flight = Gauge(
            "agentic_worker_steps_in_flight",
            "Steps this worker holds now: running, or waiting for their provider's budget",
            ["pool"],
            registry=registry,
        )
        self.slots = Gauge(
            "agentic_worker_slots",
            "Steps this worker can run at once (agentic worker --concurrency)",
            ["pool"],
            registry=registry,
        )
        self.attempts = Counter(
            "agentic_worker_attempts",
            "Step attempts this worker handled, by outcome: succeeded, failed, timed_out, "
            "crashed (redelivered), terminated (run over), shutdown (handed back), superseded",
            ["pool", "provider", "outcome"],
            registry=registry,
        )
        self.errors = Counter(
            "agentic_worker_step_errors",
            "Failed attempts on this worker by error type (StepError.type: the model's or "
            "tool's error, StepTimeout, StepCrashed)",
            ["pool", "provider", "type"],
            registry=registry,
        )
        self.duration = Histogram(
            "agentic_worker_step_duration_seconds",
            "How long the attempts this worker ran took (started_at to finished_at)",
            ["pool", "provider"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.slots.labels(pool).set(concurrency)
        self.in_flight.labels(pool).set(0)
        self._provider, self._type = BoundedLabel(), BoundedLabel()

    def track(self, holding: Callable[[], int]) -> None:
        """Count the steps in flight with ``holding`` whenever Prometheus scrapes."""
        self.in_flight.labels(self.pool).set_function(lambda: float(holding()))

    def ended(self, spec: StepSpec, kind: str, result: StepResult | None) -> None:
        """An attempt of ``spec`` ended as ``kind`` (the slot's outcome), with ``result``
        when the step process gave one."""
        provider = self._provider(spec.agent_provider.get("id"))
        outcome = result.status if kind == "finished" and result is not None else kind
        self.attempts.labels(self.pool, provider, outcome).inc()
        if result is not None and result.status == "failed":
            self.errors.labels(self.pool, provider, self._type(result.failure.type)).inc()
        elif kind in ERROR_TYPES:
            self.errors.labels(self.pool, provider, ERROR_TYPES[kind]).inc()
        duration = result.timing.duration_s if result is not None else None
        if duration is not None and duration >= 0:
            self.duration.labels(self.pool, provider).observe(duration)
