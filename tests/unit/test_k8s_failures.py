"""Kubernetes reasons for step failures that never reached agentic's code (API JSON in)."""

from __future__ import annotations

from typing import Any

from agentic.k8s.failures import pod_failure, stuck, stuck_failure


def pod(
    *, waiting: str | None = None, terminated: dict[str, Any] | None = None, **status: Any
) -> dict[str, Any]:
    state: dict[str, Any] = {}
    if waiting:
        state["waiting"] = {"reason": waiting, "message": f"{waiting} details"}
    if terminated:
        state["terminated"] = terminated
    statuses = [{"name": "agentic", "state": state}] if state else []
    return {"metadata": {"name": "p"}, "status": {"containerStatuses": statuses, **status}}


def failed_job(reason: str = "BackoffLimitExceeded") -> dict[str, Any]:
    condition = {"type": "Failed", "status": "True", "reason": reason, "message": "m"}
    return {"status": {"conditions": [condition]}}


def test_image_pull_errors_and_config_errors_are_stuck_pods_that_never_start() -> None:
    for reason in ("ErrImagePull", "ImagePullBackOff", "InvalidImageName"):
        problem = stuck(pod(waiting=reason))
        assert problem is not None and (problem.reason, problem.kind) == (reason, "image")
    config = stuck(pod(waiting="CreateContainerConfigError"))
    assert config is not None and config.kind == "config"
    assert stuck(pod(waiting="ContainerCreating")) is None  # normal start-up, not stuck


def test_an_unschedulable_pod_is_stuck_with_the_schedulers_message() -> None:
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
    }
    problem = stuck(pod(conditions=[condition]))

    assert problem is not None and problem.kind == "unschedulable"
    failure = stuck_failure(problem, waited_s=300)
    assert failure.type == "PodStartFailed" and not failure.retryable
    assert "Insufficient nvidia.com/gpu" in failure.message and "300.0 s" in failure.message


def test_oom_killed_is_a_retryable_pod_failure_that_says_to_raise_the_memory_limit() -> None:
    killed = pod(terminated={"exitCode": 137, "reason": "OOMKilled"}, phase="Failed")

    failure = pod_failure(failed_job(), killed)

    assert failure is not None and failure.type == "PodFailed" and failure.retryable
    assert "OOMKilled" in failure.message and "memory limit" in failure.message


def test_the_jobs_deadline_is_a_timeout_and_names_why_the_pod_never_started() -> None:
    failure = pod_failure(failed_job("DeadlineExceeded"), pod(waiting="ImagePullBackOff"))

    assert failure is not None and failure.type == "StepTimeout" and failure.retryable
    assert "DeadlineExceeded" in failure.message and "ImagePullBackOff" in failure.message


def test_an_evicted_pod_carries_the_kubelets_reason() -> None:
    evicted = pod(phase="Failed", reason="Evicted", message="The node was low on memory.")

    failure = pod_failure(failed_job(), evicted)

    assert failure is not None and failure.reason == "Evicted"
    assert "low on memory" in failure.message


def test_an_ordinary_non_zero_exit_is_left_to_the_driver() -> None:
    exited = pod(terminated={"exitCode": 1, "reason": "Error"}, phase="Failed")

    assert pod_failure(failed_job(), exited) is None
