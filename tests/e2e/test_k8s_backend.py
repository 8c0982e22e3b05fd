"""The ``kubernetes`` backend end to end: the official client against the API server double.

Every step is a Job whose container command is the real ``agentic execute-step`` (a local
process importing CrewAI, a few seconds here), reading its spec from and committing its
result to a file run store that the double mounts as the PVC.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentic.backends import get_backend
from agentic.backends.kubernetes import JobLauncher, KubernetesBackend
from agentic.contracts import ScriptedFailure
from agentic.k8s.jobs import step_job_manifest, step_selector
from agentic.k8s.scaler_rule import count_running
from agentic.materialize import materialize
from agentic.store import open_store
from tests.e2e.k8s_cluster import NS, PVC, Cluster, cluster_settings
from tests.factories import one_step, scripted_agent, two_steps
from tests.k8s_double import KubeDouble, wait_for
from tests.parity import run_workflow, stored_layout

# Importing CrewAI (the inprocess reference run) warns about its own package layout.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.k8s,
    pytest.mark.procs,
    pytest.mark.filterwarnings("ignore::ImportWarning"),
]

UNPULLABLE = "registry.invalid/agentic-worker:missing"


@pytest.fixture
def cluster(k8s_double: KubeDouble, k8s_api_client: Any, tmp_path: Path) -> Cluster:
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    k8s_double.add_pvc(PVC, store_dir)
    k8s_double.unpullable_images.add(UNPULLABLE)
    return Cluster(k8s_double, k8s_api_client, str(store_dir), cluster_settings(store_dir))


@pytest.fixture
def api_requests(cluster: Cluster) -> Iterator[Counter[str]]:
    """Counts the client's requests by kind: create, delete, list, watch, get, log."""
    counts: Counter[str] = Counter()
    rest = cluster.api_client.rest_client
    original = rest.request

    def counting(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        query = dict(kwargs.get("query_params") or [])
        if method == "GET" and query.get("watch"):
            counts["watch"] += 1
        elif method == "GET" and url.endswith("/log"):
            counts["log"] += 1
        elif method == "GET":
            counts["list" if url.rstrip("/").endswith(("/jobs", "/pods")) else "get"] += 1
        else:
            counts[{"POST": "create", "DELETE": "delete"}.get(method, method)] += 1
        return original(method, url, *args, **kwargs)

    rest.request = counting
    yield counts
    rest.request = original


def attempts(cluster: Cluster, run_id: str, step_id: str) -> list[Any]:
    return open_store(cluster.store_url).read_attempts(run_id, step_id)


def test_a_two_step_workflow_runs_one_job_per_step_with_the_same_results_as_inprocess(
    cluster: Cluster, api_requests: Counter[str], tmp_path: Path
) -> None:
    workflow = two_steps(topic="kubernetes")
    backend = get_backend("kubernetes", api_client=cluster.api_client)
    started = time.monotonic()

    run = run_workflow(backend, workflow, {}, cluster.store_url, settings=cluster.settings)

    elapsed = time.monotonic() - started
    assert run.record.status == "succeeded", run.record.error
    reference = run_workflow("inprocess", workflow, {}, str(tmp_path / "ref"), run_id="ref")
    assert run.outputs == reference.outputs
    assert run.outputs["write"] == "write says hello to kubernetes"
    assert stored_layout(cluster.store_url, run.record.run_id) == stored_layout(
        str(tmp_path / "ref"), "ref"
    )
    jobs = cluster.jobs(step_selector(run.record.run_id))
    assert sorted(j["metadata"]["labels"]["agentic/step-id"] for j in jobs) == ["research", "write"]
    for job in jobs:
        labels = job["metadata"]["labels"]
        assert labels["agentic/run-id"] == run.record.run_id and labels["agentic/attempt"] == "1"
        assert job["spec"]["backoffLimit"] == 0
        assert job["spec"]["ttlSecondsAfterFinished"] == cluster.settings.k8s_job_ttl_s
        assert job["spec"]["activeDeadlineSeconds"] == 600
        # Finished Jobs stay (for `kubectl logs`) until their TTL; none is left running.
        assert [c["type"] for c in job["status"]["conditions"]][-1] == "Complete"
        command = job["spec"]["template"]["spec"]["containers"][0]
        assert command["command"] == ["agentic"] and command["args"][0] == "execute-step"
        # The result was committed by that Job's pod (the downward API gives its name).
        step_id = job["metadata"]["labels"]["agentic/step-id"]
        result = open_store(cluster.store_url).read_result(run.record.run_id, step_id)
        assert result is not None and result.status == "succeeded"
        assert (result.worker.pod or "").startswith(job["metadata"]["name"])
    # Completion came from the watches: two creates, and lists only at start and per reconcile.
    assert api_requests["create"] == 2
    assert api_requests["list"] <= 2 * (elapsed / cluster.settings.k8s_reconcile_interval_s + 2)


def test_a_pod_whose_image_cannot_be_pulled_fails_its_attempt_with_the_kubernetes_reason(
    cluster: Cluster,
) -> None:
    settings = cluster_settings(
        Path(cluster.store_url), k8s_image=UNPULLABLE, k8s_pod_start_grace_s=0.5
    )
    backend = get_backend("kubernetes", api_client=cluster.api_client)

    run = run_workflow(
        backend, one_step(scripted_agent(), retries=2), {}, cluster.store_url, settings=settings
    )

    assert run.record.status == "failed"
    [attempt] = attempts(cluster, run.record.run_id, "only")  # not retryable: one attempt
    assert attempt.error is not None and attempt.error.type == "PodStartFailed"
    assert "ImagePullBackOff" in attempt.error.message or "ErrImagePull" in attempt.error.message
    assert UNPULLABLE in attempt.error.message
    assert "ImagePull" in (run.record.error or "")
    assert wait_for(lambda: not cluster.jobs(step_selector(run.record.run_id)))


def test_a_step_past_its_timeout_fails_as_timed_out_and_its_job_and_pod_are_deleted(
    cluster: Cluster,
) -> None:
    agent = scripted_agent(fail=ScriptedFailure(times=5, mode="hang"))
    backend = get_backend("kubernetes", api_client=cluster.api_client)

    run = run_workflow(
        backend,
        one_step(agent, timeout_s=2, retries=0),
        {},
        cluster.store_url,
        settings=cluster.settings,
    )

    assert run.record.status == "failed"
    [attempt] = attempts(cluster, run.record.run_id, "only")
    assert attempt.error is not None and attempt.error.type == "StepTimeout"
    assert "timeout of 2 s" in attempt.error.message
    # Whichever deadline fired first (the driver's deletes the Job, the Job's own fails it),
    # nothing of the step is left running.
    selector = step_selector(run.record.run_id)
    assert wait_for(lambda: count_running(cluster.jobs(selector)) == 0)
    assert wait_for(lambda: not cluster.pods(selector))


def test_a_job_that_reaches_its_active_deadline_first_is_a_timeout_naming_deadline_exceeded(
    cluster: Cluster,
) -> None:
    # The Job's activeDeadlineSeconds and the driver's timeout agree; here no driver runs,
    # so the Job's deadline (1 s, while the step still imports CrewAI) ends it first.
    store = open_store(cluster.store_url)
    [spec] = materialize(
        one_step(scripted_agent(), timeout_s=1),
        run_id="deadline",
        inputs={},
        store_url=store.url,
        settings=cluster.settings,
    )
    store.write_spec(spec)
    launcher = JobLauncher(store, cluster.settings, cluster.api_client)
    try:
        handle = launcher.launch(spec)
        assert wait_for(lambda: launcher.check(handle).state == "exited", timeout=20)
    finally:
        launcher.close()

    [attempt] = store.read_attempts("deadline", "only")
    assert attempt.error is not None and attempt.error.type == "StepTimeout"
    assert "DeadlineExceeded" in attempt.error.message and handle.name in attempt.error.message
    assert attempt.error.retryable


def test_an_oom_killed_pod_fails_its_attempt_naming_oomkilled(cluster: Cluster) -> None:
    agent = scripted_agent(fail=ScriptedFailure(times=5, mode="hang"))
    backend = get_backend("kubernetes", api_client=cluster.api_client)
    result: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: result.update(
            run=run_workflow(
                backend,
                one_step(agent, retries=0),
                {},
                cluster.store_url,
                settings=cluster.settings,
                run_id="oom",
            )
        )
    )
    runner.start()
    assert wait_for(lambda: cluster.running_pods(step_selector("oom")), timeout=20)

    cluster.double.oom_kill(NS, cluster.running_pods(step_selector("oom"))[0].metadata.name)
    runner.join(timeout=30)

    assert result["run"].record.status == "failed"
    [attempt] = attempts(cluster, "oom", "only")
    assert attempt.error is not None and attempt.error.type == "PodFailed"
    assert "OOMKilled" in attempt.error.message and "memory" in attempt.error.message


def test_cancelling_a_run_deletes_its_jobs_and_stops_their_pods(cluster: Cluster) -> None:
    agent = scripted_agent(fail=ScriptedFailure(times=5, mode="hang"))
    backend = get_backend("kubernetes", api_client=cluster.api_client)
    assert isinstance(backend, KubernetesBackend)
    result: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: result.update(
            run=run_workflow(
                backend,
                one_step(agent),
                {},
                cluster.store_url,
                settings=cluster.settings,
                run_id="cancel-me",
            )
        )
    )
    runner.start()
    selector = step_selector("cancel-me")
    assert wait_for(lambda: cluster.running_pods(selector), timeout=20)
    assert len(cluster.jobs(selector)) == 1

    assert backend.cancel("cancel-me")
    runner.join(timeout=30)

    assert result["run"].record.status == "cancelled"
    assert wait_for(lambda: not cluster.jobs(selector) and not cluster.pods(selector))


def test_a_job_created_before_a_restart_is_adopted_not_duplicated(cluster: Cluster) -> None:
    store = open_store(cluster.store_url)
    [spec] = materialize(
        one_step(scripted_agent(), topic="kubernetes"),
        run_id="adopt",
        inputs={},
        store_url=store.url,
        settings=cluster.settings,
    )
    spec_url = store.write_spec(spec)
    cluster.batch.create_namespaced_job(
        NS, step_job_manifest(spec, cluster.settings, spec_url=spec_url)
    )
    launcher = JobLauncher(store, cluster.settings, cluster.api_client)
    try:
        handle = launcher.launch(spec)
        assert wait_for(lambda: launcher.check(handle).state == "exited", timeout=40)
    finally:
        launcher.close()

    assert len(cluster.jobs(step_selector("adopt"))) == 1
    assert launcher.check(handle).exit_code == 0
    result = store.read_result("adopt", "only")
    assert result is not None and result.output == "only says hello to kubernetes"


def test_a_run_finishes_on_the_reconcile_alone_when_the_watches_go_silent(
    cluster: Cluster,
) -> None:
    cluster.double.silence_watches()
    settings = cluster_settings(Path(cluster.store_url), k8s_reconcile_interval_s=0.5)
    backend = get_backend("kubernetes", api_client=cluster.api_client)

    wf = one_step(scripted_agent(), topic="kubernetes")
    run = run_workflow(backend, wf, {}, cluster.store_url, settings=settings)

    assert run.record.status == "succeeded", run.record.error
    assert run.outputs == {"only": "only says hello to kubernetes"}
