"""How many worker Jobs to start: KEDA's ``default`` ScaledJob strategy, as a pure function.

``agentic scaler`` applies this rule on clusters without KEDA, so both scale alike (DESIGN §5,
§10)::

    lag      = num_pending + num_ack_pending          (in-flight steps count)
    wanted   = min(ceil(lag / lag_per_job), max_jobs)  (0 while lag <= activation_lag)
    create   = max(wanted - running, 0)

A consumer that does not exist is a refusal, never the maximum: some KEDA versions scale
straight to ``maxReplicaCount`` in that case, which starts Jobs that find no work.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_FINISHED = {"Complete", "Failed", "SuccessCriteriaMet", "FailureTarget"}


@dataclass(frozen=True)
class ConsumerLag:
    """The counts of a JetStream consumer the rule reads (from its consumer info)."""

    num_pending: int
    num_ack_pending: int

    @property
    def lag(self) -> int:
        return self.num_pending + self.num_ack_pending


@dataclass(frozen=True)
class ScaleDecision:
    """What to do this round; ``refused`` means the rule would not decide (no consumer)."""

    create: int
    wanted: int
    running: int
    lag: int | None
    reason: str
    refused: bool = False


def jobs_to_create(
    consumer: ConsumerLag | None,
    *,
    running: int,
    max_jobs: int,
    lag_per_job: int = 1,
    activation_lag: int = 0,
) -> ScaleDecision:
    """Decide how many worker Jobs to create now.

    Args:
        consumer: the pool consumer's counts, or None when the consumer does not exist.
        running: worker Jobs of the pool that have not finished.
        max_jobs: the most worker Jobs of the pool at once (KEDA's ``maxReplicaCount``).
        lag_per_job: messages one Job is expected to take (KEDA's ``lagThreshold``).
        activation_lag: no Jobs while the lag is at most this (``activationLagThreshold``).

    Raises:
        ValueError: a negative count, or ``lag_per_job`` below 1.
    """
    if min(running, max_jobs, activation_lag) < 0 or lag_per_job < 1:
        raise ValueError(
            f"invalid scaler input: running={running} max_jobs={max_jobs} "
            f"lag_per_job={lag_per_job} activation_lag={activation_lag}"
        )
    if consumer is None:
        return ScaleDecision(
            create=0,
            wanted=0,
            running=running,
            lag=None,
            refused=True,
            reason="consumer does not exist: refusing to scale (create it first)",
        )
    if min(consumer.num_pending, consumer.num_ack_pending) < 0:
        raise ValueError(f"negative consumer counts: {consumer}")
    lag = consumer.lag
    if lag <= activation_lag:
        return ScaleDecision(
            create=0,
            wanted=0,
            running=running,
            lag=lag,
            reason=f"lag {lag} <= activation threshold {activation_lag}",
        )
    wanted = min(math.ceil(lag / lag_per_job), max_jobs)
    create = max(wanted - running, 0)
    return ScaleDecision(
        create=create,
        wanted=wanted,
        running=running,
        lag=lag,
        reason=f"lag {lag}: want {wanted} of at most {max_jobs}, {running} running",
    )


def job_finished(job: Mapping[str, Any]) -> bool:
    """True when a Job (API JSON, camelCase) has a terminal condition set to True."""
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c.get("type") in _FINISHED and c.get("status") == "True" for c in conditions)


def count_running(jobs: Iterable[Mapping[str, Any]]) -> int:
    """How many of ``jobs`` have not finished (what the ``default`` strategy subtracts)."""
    return sum(1 for job in jobs if not job_finished(job))
