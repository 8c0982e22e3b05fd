"""Why a step Job's pod failed, read from the Job and pod as the API server returns them.

A step that runs reports its own failures through the run store. These are the failures that
never reach our code, so only Kubernetes can tell them (all inputs are API JSON, camelCase):

======================================  =====================================  ==========
Kubernetes says                         the attempt's error                    retryable
======================================  =====================================  ==========
container (or MCP sidecar) waiting in   ``PodStartFailed``: the reason and     no
``ErrImagePull``, ``ImagePullBackOff``, the kubelet's message
``InvalidImageName`` (past a grace)
``CreateContainerConfigError`` /        ``PodStartFailed``                     no
``CreateContainerError`` (past grace)
``PodScheduled=False Unschedulable``    ``PodStartFailed``                     no
(past a deadline)
container terminated ``OOMKilled``      ``PodFailed``: out of memory           yes
pod ``Evicted``, ``StartError``, …      ``PodFailed``                          yes
Job condition ``DeadlineExceeded``      ``StepTimeout`` (as the coordinator's  yes
                                        own timeout)
container exited with a code            none here: an ordinary crash, the      (driver)
                                        driver reports it with the log tail
======================================  =====================================  ==========
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentic import failures

Obj = Mapping[str, Any]

START_FAILED = "PodStartFailed"
POD_FAILED = "PodFailed"
TIMEOUT = failures.TIMEOUT  # one name for every timeout

IMAGE_PULL_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
UNSCHEDULABLE = "Unschedulable"
DEADLINE_EXCEEDED = "DeadlineExceeded"
OOM_KILLED = "OOMKilled"


@dataclass(frozen=True)
class Stuck:
    """A pod that has not started and may never start.

    Attributes:
        reason: The Kubernetes reason (``ImagePullBackOff``, ``Unschedulable``, …).
        message: The kubelet's or scheduler's message.
        kind: ``image``, ``config`` or ``unschedulable``: which deadline applies.
    """

    reason: str
    message: str
    kind: str


@dataclass(frozen=True)
class PodFailure:
    """A failure of a pod that never reached (or was cut off from) agentic's own code."""

    type: str
    reason: str
    message: str
    retryable: bool


def _container_state(pod: Obj | None) -> Obj:
    statuses = ((pod or {}).get("status") or {}).get("containerStatuses") or []
    return (statuses[0].get("state") or {}) if statuses else {}


def _waiting(pod: Obj) -> list[tuple[str, Obj]]:
    """``(prefix, waiting state)`` of the sidecars (named in the prefix), then the step's
    container: a sidecar that cannot start keeps the step's container waiting behind it."""
    status = pod.get("status") or {}
    found = [
        (f"MCP sidecar {s.get('name')}: ", s["state"]["waiting"])
        for s in status.get("initContainerStatuses") or []
        if (s.get("state") or {}).get("waiting")
    ]
    return [*found, ("", _container_state(pod).get("waiting") or {})]


def stuck(pod: Obj | None) -> Stuck | None:
    """What keeps a pod from starting, or None when it is starting, running or done."""
    if pod is None:
        return None
    for prefix, waiting in _waiting(pod):
        reason = waiting.get("reason", "")
        if reason in IMAGE_PULL_REASONS:
            return Stuck(reason, prefix + waiting.get("message", ""), "image")
        if reason in CONFIG_REASONS:
            return Stuck(reason, prefix + waiting.get("message", ""), "config")
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == UNSCHEDULABLE
        ):
            return Stuck(UNSCHEDULABLE, condition.get("message", ""), "unschedulable")
    return None


def stuck_failure(problem: Stuck, *, waited_s: float | None = None) -> PodFailure:
    """The failed attempt of a pod that stayed stuck (for ``waited_s`` seconds, if known)."""
    message = f"Kubernetes: the pod never started: {problem.reason}"
    if problem.message:
        message += f": {problem.message}"
    if waited_s is not None:
        message += f" (still so after {waited_s:.1f} s)"
    return PodFailure(START_FAILED, problem.reason, message, retryable=False)


def exit_code(pod: Obj | None) -> int | None:
    """The container's exit code once it terminated."""
    terminated = _container_state(pod).get("terminated")
    return None if terminated is None else int(terminated.get("exitCode", 1))


def pod_finished(pod: Obj | None) -> bool:
    """True when the pod's phase is terminal."""
    return ((pod or {}).get("status") or {}).get("phase") in ("Succeeded", "Failed")


def job_succeeded(job: Obj | None) -> bool:
    """True when the Job has a ``Complete`` condition set to True."""
    conditions = ((job or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Complete" and c.get("status") == "True" for c in conditions)


def _job_failed_reason(job: Obj | None) -> tuple[str, str] | None:
    conditions = ((job or {}).get("status") or {}).get("conditions") or []
    for c in conditions:
        if c.get("type") in ("Failed", "FailureTarget") and c.get("status") == "True":
            return c.get("reason", ""), c.get("message", "")
    return None


def pod_failure(job: Obj | None, pod: Obj | None) -> PodFailure | None:
    """The Kubernetes-side failure of a finished Job, or None for an ordinary exit.

    An ordinary exit (the container ran and exited with a code) is left to the driver: the
    step recorded its own failure, or it crashed and the exit code and log tail say why.
    """
    problem = stuck(pod)
    failed = _job_failed_reason(job)
    if failed is not None and failed[0] == DEADLINE_EXCEEDED:
        message = f"Kubernetes: {DEADLINE_EXCEEDED}: {failed[1] or 'active deadline reached'}"
        if problem is not None:  # the real cause: it never started
            message += f"; the pod never started: {problem.reason}: {problem.message}"
        return PodFailure(TIMEOUT, DEADLINE_EXCEEDED, message, retryable=True)
    if problem is not None:
        return stuck_failure(problem)
    terminated = _container_state(pod).get("terminated") or {}
    if terminated.get("reason") == OOM_KILLED:
        return PodFailure(
            POD_FAILED,
            OOM_KILLED,
            f"Kubernetes: {OOM_KILLED}: the container ran out of memory "
            f"(exit code {terminated.get('exitCode', 137)}); raise its memory limit",
            retryable=True,
        )
    status = (pod or {}).get("status") or {}
    if status.get("reason"):  # Evicted, NodeLost, Shutdown…: the pod was ended from outside
        detail = status.get("message", "")
        message = f"Kubernetes: {status['reason']}" + (f": {detail}" if detail else "")
        return PodFailure(POD_FAILED, status["reason"], message, retryable=True)
    if terminated.get("reason") in ("StartError", "ContainerCannotRun"):
        message = f"Kubernetes: {terminated['reason']}: {terminated.get('message', '')}".rstrip()
        return PodFailure(POD_FAILED, terminated["reason"], message, retryable=True)
    return None
