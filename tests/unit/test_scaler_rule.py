"""The scaling rule of `agentic scaler`: KEDA's `default` ScaledJob strategy."""

from __future__ import annotations

from typing import Any

import pytest

from agentic.k8s.scaler_rule import (
    ConsumerLag,
    count_running,
    job_finished,
    jobs_to_create,
)


@pytest.mark.parametrize(
    ("pending", "ack_pending", "running", "max_jobs", "create"),
    [
        (0, 0, 0, 10, 0),  # empty queue: nothing to do
        (3, 0, 0, 10, 3),  # one Job per waiting step
        (2, 2, 0, 10, 4),  # in-flight steps count as lag too
        (2, 2, 3, 10, 1),  # running Jobs are subtracted
        (50, 0, 0, 10, 10),  # never more than the maximum
        (50, 0, 8, 10, 2),  # up to the maximum, counting running Jobs
        (1, 0, 5, 10, 0),  # more Jobs than work: none, never negative
        (0, 4, 4, 10, 0),  # every in-flight step already has its Job
    ],
)
def test_jobs_to_create_follows_keda_default_strategy(
    pending: int, ack_pending: int, running: int, max_jobs: int, create: int
) -> None:
    decision = jobs_to_create(
        ConsumerLag(num_pending=pending, num_ack_pending=ack_pending),
        running=running,
        max_jobs=max_jobs,
    )
    assert decision.create == create
    assert decision.lag == pending + ack_pending
    assert not decision.refused


def test_a_missing_consumer_is_a_refusal_not_the_maximum() -> None:
    decision = jobs_to_create(None, running=0, max_jobs=100)

    assert decision.refused
    assert decision.create == 0
    assert "does not exist" in decision.reason


def test_the_lag_threshold_divides_work_among_jobs_rounding_up() -> None:
    decision = jobs_to_create(ConsumerLag(7, 0), running=0, max_jobs=10, lag_per_job=3)
    assert (decision.wanted, decision.create) == (3, 3)


def test_no_jobs_start_until_the_activation_threshold_is_passed() -> None:
    quiet = jobs_to_create(ConsumerLag(2, 0), running=0, max_jobs=10, activation_lag=2)
    busy = jobs_to_create(ConsumerLag(3, 0), running=0, max_jobs=10, activation_lag=2)
    assert quiet.create == 0 and "activation" in quiet.reason
    assert busy.create == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"running": -1, "max_jobs": 1},
        {"running": 0, "max_jobs": -1},
        {"running": 0, "max_jobs": 1, "lag_per_job": 0},
        {"running": 0, "max_jobs": 1, "activation_lag": -1},
    ],
)
def test_impossible_inputs_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        jobs_to_create(ConsumerLag(1, 0), **kwargs)
    with pytest.raises(ValueError):
        jobs_to_create(ConsumerLag(-1, 0), running=0, max_jobs=1)


def _job(*conditions: tuple[str, str]) -> dict[str, Any]:
    return {"status": {"conditions": [{"type": t, "status": s} for t, s in conditions]}}


def test_only_jobs_without_a_terminal_condition_count_as_running() -> None:
    jobs = [
        {"metadata": {"name": "new"}},  # just created: no status yet
        _job(),  # running
        _job(("Complete", "False")),  # a condition that is not true
        _job(("SuccessCriteriaMet", "True"), ("Complete", "True")),
        _job(("FailureTarget", "True")),  # failing: its pod is being terminated
        _job(("FailureTarget", "True"), ("Failed", "True")),
    ]
    assert [job_finished(j) for j in jobs] == [False, False, False, True, True, True]
    assert count_running(jobs) == 3
