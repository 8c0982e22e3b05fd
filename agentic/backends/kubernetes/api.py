"""Small helpers over the official ``kubernetes`` client, shared by the backend and the scaler.

The client is imported inside the functions (DESIGN §8: the core never imports Kubernetes at
import time). Objects travel as API JSON (camelCase dicts), the form :mod:`agentic.k8s` reads
and writes: lists and logs are read with ``_preload_content=False`` and decoded here, which
also skips the client's slow model deserialization.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from agentic.errors import ConfigError

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 40
# An API call must not hang the driver or the scaler: (connect, read) seconds.
REQUEST_TIMEOUT = (5.0, 30.0)

Obj = dict[str, Any]


def load_api_client() -> Any:
    """An ``ApiClient`` from the in-cluster service account, else from the kubeconfig.

    Raises:
        ConfigError: neither is available (the message says what was tried).
    """
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException as in_cluster:
        try:
            config.load_kube_config()
        except (config.ConfigException, OSError) as kubeconfig:
            raise ConfigError(
                "cannot reach a Kubernetes API server: no in-cluster service account "
                f"({in_cluster}) and no usable kubeconfig ({kubeconfig}); set KUBECONFIG "
                "or run inside the cluster"
            ) from kubeconfig
    return client.ApiClient()


def api_status(exc: BaseException) -> int | None:
    """The HTTP status of a client ``ApiException``, None for other errors."""
    from kubernetes.client.rest import ApiException

    return exc.status if isinstance(exc, ApiException) else None


def list_objects(
    list_fn: Callable[..., Any], namespace: str, selector: str
) -> tuple[list[Obj], str]:
    """``(items, resourceVersion)`` of a namespaced list call, e.g. ``list_namespaced_job``."""
    response = list_fn(
        namespace,
        label_selector=selector,
        _preload_content=False,
        _request_timeout=REQUEST_TIMEOUT,
    )
    body = json.loads(response.data)
    return list(body.get("items") or []), str(body["metadata"].get("resourceVersion", ""))


def create_job(batch: Any, manifest: Obj) -> Obj:
    """Create a Job from its manifest; returns the created Job (API JSON)."""
    response = batch.create_namespaced_job(
        manifest["metadata"]["namespace"],
        manifest,
        _preload_content=False,
        _request_timeout=REQUEST_TIMEOUT,
    )
    created: Obj = json.loads(response.data)
    return created


def read_job(batch: Any, namespace: str, name: str) -> Obj | None:
    """The Job, or None when it does not exist."""
    from kubernetes.client.rest import ApiException

    try:
        response = batch.read_namespaced_job(
            name, namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    found: Obj = json.loads(response.data)
    return found


def delete_job(batch: Any, namespace: str, name: str) -> bool:
    """Delete a Job and its pods (Foreground propagation); False when it was already gone.

    Without Foreground (or Background) propagation a deleted batch/v1 Job orphans its
    pods, which then run on.
    """
    from kubernetes.client.rest import ApiException

    try:
        batch.delete_namespaced_job(
            name,
            namespace,
            propagation_policy="Foreground",
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def delete_jobs(batch: Any, namespace: str, selector: str, *, finished: bool = True) -> list[str]:
    """Delete every Job matching ``selector`` (only unfinished ones unless ``finished``).

    Returns:
        The names of the Jobs asked to go.
    """
    from agentic.k8s.scaler_rule import job_finished

    items, _ = list_objects(batch.list_namespaced_job, namespace, selector)
    deleted = []
    for job in items:
        if job["metadata"].get("deletionTimestamp") or (not finished and job_finished(job)):
            continue
        if delete_job(batch, namespace, job["metadata"]["name"]):
            deleted.append(job["metadata"]["name"])
    return deleted


def job_pod(core: Any, namespace: str, job_name: str) -> Obj | None:
    """The newest pod of a Job, read now (None when it has none)."""
    pods, _ = list_objects(core.list_namespaced_pod, namespace, f"job-name={job_name}")
    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
    return pods[-1] if pods else None


def pod_log_tail(core: Any, namespace: str, pod: str, *, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a pod's log, or "" when there is none to read.

    kubernetes 36's ``read_namespaced_pod_log`` returns the repr of the bytes
    (kubernetes-client/python#2596): the raw response is read and decoded instead.
    """
    from kubernetes.client.rest import ApiException

    try:
        response = core.read_namespaced_pod_log(
            pod,
            namespace,
            tail_lines=lines,
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT,
        )
    except ApiException as exc:  # 400 while waiting to start, 404 once deleted
        log.debug("no log for pod %s: %s", pod, exc.reason)
        return ""
    data: bytes = response.data
    return data.decode("utf-8", errors="replace")
