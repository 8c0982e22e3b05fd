"""The Kubernetes API server double, driven by the official ``kubernetes`` client."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from agentic.contracts.messages import StepSpec, TaskText
from agentic.k8s.jobs import step_job_manifest
from agentic.settings import get_settings
from tests.k8s_double import wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.procs]

NS = "agentic"


def job(name: str, code: str, **spec: Any) -> dict[str, Any]:
    """A minimal valid Job running ``python -c code``."""
    container = {"name": "main", "image": "python:3.11", "command": [sys.executable, "-c", code]}
    container.update(spec.pop("container", {}))
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    pod.update(spec.pop("pod", {}))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"app": "double-test", "case": name}},
        "spec": {"backoffLimit": 0, "template": {"spec": pod}, **spec},
    }


def wait_finished(
    batch: client.BatchV1Api, name: str, timeout: int = 20, selector: str | None = None
) -> client.V1Job:
    """Watch the Job until it has a Complete or Failed condition."""
    w = watch.Watch()
    for event in w.stream(
        batch.list_namespaced_job,
        NS,
        label_selector=selector or f"case={name}",
        timeout_seconds=timeout,
    ):
        found = event["object"]
        for cond in (found.status and found.status.conditions) or []:
            if cond.type in ("Complete", "Failed") and cond.status == "True":
                w.stop()
                return found
    raise AssertionError(f"job {name} did not finish within {timeout}s")


def read_log(core: client.CoreV1Api, pod: str) -> str:
    """The pod's log as text.

    kubernetes 36's ``read_namespaced_pod_log`` returns ``"b'...'"`` (the repr of the bytes;
    kubernetes-client/python#2596), so read the raw response and decode it.
    """
    return core.read_namespaced_pod_log(pod, NS, _preload_content=False).data.decode()


def only_pod(core: client.CoreV1Api, job_name: str) -> client.V1Pod:
    pods = core.list_namespaced_pod(NS, label_selector=f"job-name={job_name}").items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


@pytest.fixture
def batch(k8s_api_client) -> client.BatchV1Api:  # type: ignore[no-untyped-def]
    return client.BatchV1Api(k8s_api_client)


@pytest.fixture
def core(k8s_api_client) -> client.CoreV1Api:  # type: ignore[no-untyped-def]
    return client.CoreV1Api(k8s_api_client)


def test_a_job_completes_its_log_is_readable_and_a_second_delete_is_404(batch, core) -> None:
    batch.create_namespaced_job(NS, job("hello", "print('hi')"))

    finished = wait_finished(batch, "hello")

    assert finished.status.succeeded == 1
    assert [c.type for c in finished.status.conditions] == ["SuccessCriteriaMet", "Complete"]
    pod = only_pod(core, "hello")
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    assert read_log(core, pod.metadata.name) == "hi\n"

    batch.delete_namespaced_job("hello", NS, propagation_policy="Foreground")
    assert wait_for(lambda: not batch.list_namespaced_job(NS).items)
    assert core.list_namespaced_pod(NS).items == []
    with pytest.raises(ApiException) as gone:
        batch.delete_namespaced_job("hello", NS, propagation_policy="Foreground")
    assert gone.value.status == 404
    with pytest.raises(ApiException) as missing:
        batch.read_namespaced_job("hello", NS)
    assert missing.value.status == 404


def test_a_failing_command_fails_the_job_with_its_exit_code(batch, core) -> None:
    batch.create_namespaced_job(NS, job("boom", "import sys; print('bad'); sys.exit(3)"))

    finished = wait_finished(batch, "boom")

    assert finished.status.failed == 1
    assert finished.status.conditions[-1].reason == "BackoffLimitExceeded"
    terminated = only_pod(core, "boom").status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (3, "Error")


def test_the_active_deadline_kills_the_process_and_fails_the_job(batch, core, tmp_path) -> None:
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    started = time.monotonic()
    batch.create_namespaced_job(NS, job("slow", code, activeDeadlineSeconds=1))

    finished = wait_finished(batch, "slow")

    assert time.monotonic() - started < 10
    assert finished.status.conditions[-1].type == "Failed"
    assert finished.status.conditions[-1].reason == "DeadlineExceeded"
    pid = int(pid_file.read_text())
    assert wait_for(lambda: not _alive(pid), timeout=5), "the pod's process survived the deadline"
    assert wait_for(lambda: not core.list_namespaced_pod(NS, label_selector="job-name=slow").items)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_an_unpullable_image_never_runs_and_reports_the_pull_error(
    k8s_double, batch, core, tmp_path
) -> None:
    k8s_double.unpullable_images.add("registry.invalid/agentic:missing")
    marker = tmp_path / "ran"
    spec = job(
        "nopull",
        f"open({str(marker)!r}, 'w')",
        container={"image": "registry.invalid/agentic:missing"},
    )
    batch.create_namespaced_job(NS, spec)

    def waiting_reason() -> str | None:
        statuses = only_pod(core, "nopull").status.container_statuses
        return statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else None

    assert wait_for(lambda: waiting_reason() == "ImagePullBackOff")
    pod = only_pod(core, "nopull")
    assert pod.status.phase == "Pending"
    assert (
        "registry.invalid/agentic:missing" in pod.status.container_statuses[0].state.waiting.message
    )
    assert batch.read_namespaced_job("nopull", NS).status.active == 1
    with pytest.raises(ApiException) as not_started:
        read_log(core, pod.metadata.name)
    assert not_started.value.status == 400
    assert not marker.exists()


def test_pods_get_plain_env_the_pod_name_and_secrets_only_through_env_from(
    k8s_double, batch, core
) -> None:
    k8s_double.add_secret(NS, "llm-keys", {"OPENAI_API_KEY": "sk-fake-from-secret"})
    code = "import os; print(*(os.environ[k] for k in ('POD_NAME', 'GREETING', 'OPENAI_API_KEY')))"
    env = [
        {"name": "GREETING", "value": "hello"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    batch.create_namespaced_job(
        NS,
        job("envs", code, container={"env": env, "envFrom": [{"secretRef": {"name": "llm-keys"}}]}),
    )

    wait_finished(batch, "envs")

    pod = only_pod(core, "envs")
    assert read_log(core, pod.metadata.name).split() == [
        pod.metadata.name,
        "hello",
        "sk-fake-from-secret",
    ]
    assert "sk-fake-from-secret" not in json.dumps(
        batch.read_namespaced_job("envs", NS).to_dict(), default=str
    )


def test_a_missing_secret_leaves_the_container_waiting_in_config_error(batch, core) -> None:
    batch.create_namespaced_job(
        NS, job("nosecret", "print(1)", container={"envFrom": [{"secretRef": {"name": "absent"}}]})
    )

    def reason() -> str | None:
        statuses = only_pod(core, "nosecret").status.container_statuses
        return statuses[0].state.waiting.reason if statuses else None

    assert wait_for(lambda: reason() == "CreateContainerConfigError")


def test_a_pvc_mount_maps_to_its_local_directory(k8s_double, batch, tmp_path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    k8s_double.add_pvc("runs", store)
    code = "import sys; open(sys.argv[1], 'w').write('from the pod')"
    spec = job(
        "mount",
        code,
        container={
            "args": ["/var/lib/agentic/out.txt"],
            "volumeMounts": [{"name": "store", "mountPath": "/var/lib/agentic"}],
        },
        pod={"volumes": [{"name": "store", "persistentVolumeClaim": {"claimName": "runs"}}]},
    )
    batch.create_namespaced_job(NS, spec)

    assert wait_finished(batch, "mount").status.succeeded == 1
    assert (store / "out.txt").read_text() == "from the pod"


def test_an_unknown_pvc_or_node_selector_leaves_the_pod_unschedulable(batch, core) -> None:
    batch.create_namespaced_job(
        NS, job("gpu", "print(1)", pod={"nodeSelector": {"accelerator": "nvidia"}})
    )

    def scheduled() -> Any:
        conditions = only_pod(core, "gpu").status.conditions or []
        return next((c for c in conditions if c.type == "PodScheduled"), None)

    assert wait_for(lambda: scheduled() is not None)
    assert (scheduled().status, scheduled().reason) == ("False", "Unschedulable")


def test_invalid_jobs_are_rejected_like_the_api_server_does(batch) -> None:
    too_long = job("x" * 64, "print(1)")
    unknown_field = job("typo", "print(1)")
    unknown_field["spec"]["backofLimit"] = 0
    bad_label = job("label", "print(1)")
    bad_label["metadata"]["labels"]["agentic/run-id"] = "ends-with-dash-"

    for body in (too_long, unknown_field, bad_label):
        with pytest.raises(ApiException) as rejected:
            batch.create_namespaced_job(NS, body)
        assert rejected.value.status == 422, body["metadata"]["name"]
    batch.create_namespaced_job(NS, job("dup", "print(1)"))
    with pytest.raises(ApiException) as conflict:
        batch.create_namespaced_job(NS, job("dup", "print(1)"))
    assert conflict.value.status == 409


def test_list_filters_by_label_selector(batch) -> None:
    for name, team in (("a1", "red"), ("a2", "blue"), ("a3", "red")):
        body = job(name, "print(1)")
        body["metadata"]["labels"]["team"] = team
        batch.create_namespaced_job(NS, body)

    def names(selector: str) -> list[str]:
        return sorted(
            j.metadata.name for j in batch.list_namespaced_job(NS, label_selector=selector).items
        )

    assert names("team=red") == ["a1", "a3"]
    assert names("team!=red") == ["a2"]
    assert names("team in (blue, green)") == ["a2"]
    assert names("app=double-test,case=a3") == ["a3"]


def test_a_watch_resumes_after_the_resource_version_of_a_list(batch) -> None:
    listed = batch.list_namespaced_job(NS)
    batch.create_namespaced_job(NS, job("w1", "print(1)"))
    w = watch.Watch()
    events = []
    for event in w.stream(
        batch.list_namespaced_job,
        NS,
        resource_version=listed.metadata.resource_version,
        timeout_seconds=5,
    ):
        events.append((event["type"], event["object"].metadata.name))
        if event["type"] == "ADDED":
            w.stop()
    assert events[0] == ("ADDED", "w1")


def test_a_watch_from_before_compaction_gets_410_gone(k8s_double, batch) -> None:
    batch.create_namespaced_job(NS, job("c0", "print(0)"))
    old = batch.list_namespaced_job(NS).metadata.resource_version
    batch.create_namespaced_job(NS, job("c1", "print(1)"))
    k8s_double.compact()

    with pytest.raises(ApiException) as expired:
        for _ in watch.Watch().stream(
            batch.list_namespaced_job, NS, resource_version=old, timeout_seconds=2
        ):
            pass
    assert expired.value.status == 410


def test_deleting_without_a_propagation_policy_orphans_the_running_pod(batch, core) -> None:
    batch.create_namespaced_job(NS, job("orphan", "import time; time.sleep(30)"))
    assert wait_for(lambda: only_pod(core, "orphan").status.phase == "Running")

    batch.delete_namespaced_job("orphan", NS)

    assert batch.list_namespaced_job(NS).items == []
    time.sleep(0.2)
    assert only_pod(core, "orphan").status.phase == "Running"


def test_a_background_delete_kills_the_pod(batch, core) -> None:
    batch.create_namespaced_job(NS, job("bg", "import time; time.sleep(30)"))
    assert wait_for(lambda: only_pod(core, "bg").status.phase == "Running")

    batch.delete_namespaced_job("bg", NS, propagation_policy="Background")

    assert wait_for(lambda: not core.list_namespaced_pod(NS, label_selector="job-name=bg").items)


def test_oom_kill_reports_oomkilled(k8s_double, batch, core) -> None:
    batch.create_namespaced_job(NS, job("oom", "import time; time.sleep(30)"))
    assert wait_for(lambda: only_pod(core, "oom").status.phase == "Running")

    k8s_double.oom_kill(NS, only_pod(core, "oom").metadata.name)

    assert wait_finished(batch, "oom").status.failed == 1
    terminated = only_pod(core, "oom").status.container_statuses[0].state.terminated
    assert (terminated.reason, terminated.exit_code) == ("OOMKilled", 137)


def test_a_step_job_from_agentic_runs_with_its_env_and_mounts(
    k8s_double, batch, core, tmp_path
) -> None:
    store = tmp_path / "pvc"
    (store / "store").mkdir(parents=True)
    k8s_double.add_pvc("agentic-store", store)
    k8s_double.add_secret(NS, "agentic-secrets", {"OPENAI_API_KEY": "sk-fake"})
    settings = get_settings(
        k8s_store_pvc="agentic-store",
        k8s_secret_name="agentic-secrets",
        k8s_store_mount_path="/var/lib/agentic",
    )
    spec = StepSpec(
        run_id="run-1",
        step_id="research",
        step_index=0,
        attempt=1,
        workflow_name="demo",
        topic="t",
        task=TaskText(description="d", expected_output="e"),
        agent_provider={"id": "writer", "type": "openai", "required_env": ["OPENAI_API_KEY"]},
        store_url="/var/lib/agentic/store",
        timeout_s=30,
    )
    manifest = step_job_manifest(spec, settings, spec_url="/var/lib/agentic/store/spec.json")
    # The double has no image entrypoints: swap `agentic execute-step` for a probe of the pod.
    probe = (
        "import os, sys; open(sys.argv[1].replace('spec.json', 'seen'), 'w').write("
        "' '.join([os.environ['POD_NAME'], os.environ['OPENAI_API_KEY'], "
        "str(os.path.isdir(os.environ['HOME']))]))"
    )
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["command"], container["args"] = [sys.executable, "-c", probe], container["args"][1:]
    batch.create_namespaced_job(NS, manifest)
    name = manifest["metadata"]["name"]

    finished = wait_finished(batch, name, selector="agentic/run-id=run-1,agentic/step-id=research")
    conditions = [(c.type, c.reason, c.message) for c in finished.status.conditions or []]
    pod = only_pod(core, name)
    states = [c.state.to_dict() for c in pod.status.container_statuses or []]
    log = read_log(core, pod.metadata.name)
    assert finished.status.succeeded == 1, f"conditions={conditions} states={states} log={log!r}"
    pod_name = only_pod(core, name).metadata.name
    assert (store / "store" / "seen").read_text() == f"{pod_name} sk-fake True"
    assert not Path("/home/agentic").exists()


def test_a_pod_stuck_pulling_its_image_fails_the_job_at_the_deadline(
    k8s_double, batch, core
) -> None:
    k8s_double.unpullable_images.add("registry.invalid/agentic:missing")
    spec = job(
        "stuck",
        "print(1)",
        activeDeadlineSeconds=1,
        container={"image": "registry.invalid/agentic:missing"},
    )
    batch.create_namespaced_job(NS, spec)

    finished = wait_finished(batch, "stuck")

    assert finished.status.conditions[-1].reason == "DeadlineExceeded"
    assert wait_for(lambda: not core.list_namespaced_pod(NS, label_selector="job-name=stuck").items)
