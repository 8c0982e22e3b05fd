"""The watch + relist cache of the kubernetes backend, against the API server double."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest
from kubernetes import client

from agentic.backends.kubernetes.watch import WatchedObjects
from agentic.k8s.scaler_rule import job_finished
from tests.k8s_double import KubeDouble, wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.procs]

NS = "agentic"


def job(name: str, code: str = "pass") -> dict[str, Any]:
    container = {"name": "main", "image": "python:3.11", "command": [sys.executable, "-c", code]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"suite": "watch"}},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }


def watched(api_client: Any, changes: list[int]) -> WatchedObjects:
    batch = client.BatchV1Api(api_client)
    return WatchedObjects(
        batch.list_namespaced_job, NS, "suite=watch", on_change=lambda: changes.append(1)
    ).start()


def test_the_watch_sees_a_job_created_finished_and_deleted(
    k8s_double: KubeDouble, k8s_api_client: Any
) -> None:
    changes: list[int] = []
    jobs = watched(k8s_api_client, changes)
    batch = client.BatchV1Api(k8s_api_client)
    try:
        assert jobs.synced.wait(5)
        batch.create_namespaced_job(NS, job("one"))
        assert wait_for(lambda: (j := jobs.get("one")) is not None and job_finished(j))

        batch.delete_namespaced_job("one", NS, propagation_policy="Foreground")

        assert wait_for(lambda: jobs.get("one") is None and jobs.gone("one") is not None)
        assert changes  # every change woke the owner
    finally:
        jobs.stop()


def test_after_a_410_gone_the_watch_lists_again_and_keeps_following(
    k8s_double: KubeDouble, k8s_api_client: Any
) -> None:
    jobs = watched(k8s_api_client, [])
    batch = client.BatchV1Api(k8s_api_client)
    try:
        assert jobs.synced.wait(5)
        batch.create_namespaced_job(NS, job("before"))
        assert wait_for(lambda: jobs.get("before") is not None)
        k8s_double.silence_watches()  # the watch falls behind…
        batch.create_namespaced_job(NS, job("during"))
        k8s_double.compact()  # …and its resourceVersion is compacted away: 410 on resume
        k8s_double.silence_watches(False)
        batch.create_namespaced_job(NS, job("after"))

        assert wait_for(lambda: jobs.get("during") is not None and jobs.get("after") is not None)
    finally:
        jobs.stop()


def test_a_relist_forgets_a_job_deleted_while_the_watch_was_silent(
    k8s_double: KubeDouble, k8s_api_client: Any
) -> None:
    jobs = watched(k8s_api_client, [])
    batch = client.BatchV1Api(k8s_api_client)
    try:
        assert jobs.synced.wait(5)
        batch.create_namespaced_job(NS, job("gone", "import time; time.sleep(30)"))
        assert wait_for(lambda: jobs.get("gone") is not None)
        k8s_double.silence_watches()
        batch.delete_namespaced_job("gone", NS, propagation_policy="Foreground")
        assert wait_for(lambda: not batch.list_namespaced_job(NS).items)
        assert jobs.get("gone") is not None  # the silent watch did not tell

        jobs.relist()

        assert jobs.get("gone") is None and jobs.gone("gone") is not None
    finally:
        k8s_double.silence_watches(False)
        jobs.stop()


def test_stopping_ends_an_open_watch_at_once(k8s_double: KubeDouble, k8s_api_client: Any) -> None:
    jobs = watched(k8s_api_client, [])
    assert jobs.synced.wait(5)
    time.sleep(0.2)  # the watch request is open and waiting for events

    started = time.monotonic()
    jobs.stop(timeout=5)

    # A watch left to end by itself would take WATCH_TIMEOUT_S (240 s).
    assert time.monotonic() - started < 3.0
