"""The scaler's Prometheus metrics: what each round saw and decided.

One :class:`ScalerMetrics` per ``agentic scaler`` (one pool), in a registry of its own,
served by :func:`services.metrics.serve_metrics`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from agentic.k8s.scaler_rule import ScaleDecision


class ScalerMetrics:
    """The metrics of the scaler of ``pool``.

    Args:
        pool: The pool it scales (a label of every metric).
        registry: Where the metrics are registered (default: a new one).
    """

    def __init__(self, pool: str, registry: CollectorRegistry | None = None) -> None:
        self.pool = pool
        self.registry = registry = registry if registry is not None else CollectorRegistry()
        self.lag = Gauge(
            "agentic_scaler_queue_lag",
            "The pool consumer's lag at the last round (num_pending + num_ack_pending)",
            ["pool"],
            registry=registry,
        )
        self.wanted = Gauge(
            "agentic_scaler_jobs_wanted",
            "Worker Jobs the scaling rule wants for the pool at the last round",
            ["pool"],
            registry=registry,
        )
        self.running = Gauge(
            "agentic_scaler_jobs_running",
            "Unfinished worker Jobs of the pool at the last round",
            ["pool"],
            registry=registry,
        )
        self.created = Counter(
            "agentic_scaler_jobs_created",
            "Worker Jobs the scaler created",
            ["pool"],
            registry=registry,
        )
        self.rounds = Counter(
            "agentic_scaler_rounds",
            "Scaling rounds, by result: scaled (the rule decided), refused (no consumer), "
            "failed (NATS or the API server out of reach)",
            ["pool", "result"],
            registry=registry,
        )
        for result in ("scaled", "refused", "failed"):
            self.rounds.labels(pool, result)
        self.created.labels(pool)

    def decided(self, decision: ScaleDecision) -> None:
        """A round's decision (the Jobs it creates are counted by :meth:`job_created`)."""
        pool = self.pool
        if decision.refused:
            self.rounds.labels(pool, "refused").inc()
            return
        self.rounds.labels(pool, "scaled").inc()
        if decision.lag is not None:
            self.lag.labels(pool).set(decision.lag)
        self.wanted.labels(pool).set(decision.wanted)
        self.running.labels(pool).set(decision.running)

    def job_created(self) -> None:
        self.created.labels(self.pool).inc()

    def round_failed(self) -> None:
        self.rounds.labels(self.pool, "failed").inc()
