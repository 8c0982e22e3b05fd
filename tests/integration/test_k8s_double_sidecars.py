"""Native sidecars in the API server double, driven by the official ``kubernetes`` client."""

from __future__ import annotations

import socket
import sys
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.fixtures.servers import free_port
from tests.integration.test_k8s_double import NS, job, only_pod, read_log, wait_finished
from tests.k8s_double import KubeDouble, wait_for

pytestmark = [pytest.mark.k8s, pytest.mark.procs]

SERVER_IMAGE = "registry.example.com/tools/http-server:1"

# The main container fetches from its sidecar; the URL uses Kubernetes' $(VAR) expansion.
FETCH = (
    "import os, urllib.request\n"
    "with urllib.request.urlopen(os.environ['URL'], timeout=5) as r:\n"
    "    print('sidecar answered', r.status)\n"
)


def sidecar(port: int, **fields: Any) -> dict[str, Any]:
    """A native sidecar serving HTTP on ``port`` from its image's "entrypoint"."""
    return {
        "name": "server",
        "image": SERVER_IMAGE,
        "restartPolicy": "Always",
        "args": ["$(PORT)", "--bind", "127.0.0.1"],
        "env": [{"name": "PORT", "value": str(port)}],
        "startupProbe": {"tcpSocket": {"port": port}, "periodSeconds": 1, "failureThreshold": 30},
        **fields,
    }


def fetching_job(name: str, port: int, *inits: dict[str, Any]) -> dict[str, Any]:
    env = [
        {"name": "PORT", "value": str(port)},
        {"name": "URL", "value": "http://127.0.0.1:$(PORT)/"},
    ]
    return job(name, FETCH, container={"env": env}, pod={"initContainers": list(inits)})


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def double(k8s_double: KubeDouble) -> KubeDouble:
    k8s_double.add_image(SERVER_IMAGE, [sys.executable, "-m", "http.server"])
    return k8s_double


@pytest.fixture
def batch(k8s_api_client) -> client.BatchV1Api:  # type: ignore[no-untyped-def]
    return client.BatchV1Api(k8s_api_client)


@pytest.fixture
def core(k8s_api_client) -> client.CoreV1Api:  # type: ignore[no-untyped-def]
    return client.CoreV1Api(k8s_api_client)


def test_a_sidecar_serves_the_main_container_and_stops_once_it_has_exited(
    double: KubeDouble, batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    port = free_port()
    batch.create_namespaced_job(NS, fetching_job("with-sidecar", port, sidecar(port)))

    finished = wait_finished(batch, "with-sidecar")

    assert finished.status.succeeded == 1
    pod = only_pod(core, "with-sidecar")
    # The main container started after the probe passed: its first request was answered.
    assert "sidecar answered 200" in read_log(core, pod.metadata.name)
    [status] = pod.status.init_container_statuses
    assert status.name == "server" and status.state.terminated is not None
    assert pod.status.phase == "Succeeded"
    assert not listening(port), "the sidecar outlived its pod's main container"
    served = core.read_namespaced_pod_log(
        pod.metadata.name, NS, container="server", _preload_content=False
    ).data.decode()
    assert "GET / HTTP/1.1" in served


def test_a_sidecar_whose_image_cannot_be_pulled_keeps_the_main_container_initializing(
    double: KubeDouble, batch: client.BatchV1Api, core: client.CoreV1Api
) -> None:
    port = free_port()
    double.unpullable_images.add(SERVER_IMAGE)
    batch.create_namespaced_job(NS, fetching_job("bad-sidecar", port, sidecar(port)))

    def waiting() -> tuple[str | None, str | None]:
        pods = core.list_namespaced_pod(NS, label_selector="job-name=bad-sidecar").items
        if not pods or not pods[0].status.init_container_statuses:
            return None, None
        init = pods[0].status.init_container_statuses[0].state.waiting
        main = pods[0].status.container_statuses[0].state.waiting
        return (init and init.reason), (main and main.reason)

    assert wait_for(lambda: waiting() == ("ImagePullBackOff", "PodInitializing"), timeout=5)
    assert not listening(port)


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        ({"restartPolicy": None}, "init containers that run to completion"),
        ({"readinessProbe": {"tcpSocket": {"port": 80}}}, "readinessProbe"),
        ({"startupProbe": {"exec": {"command": ["true"]}}}, "only tcpSocket or httpGet"),
    ],
)
def test_what_the_double_cannot_emulate_of_init_containers_is_refused(
    double: KubeDouble, batch: client.BatchV1Api, change: dict[str, Any], refused: str
) -> None:
    init = {k: v for k, v in {**sidecar(8080), **change}.items() if v is not None}
    with pytest.raises(ApiException) as caught:
        batch.create_namespaced_job(NS, fetching_job("refused", 8080, init))
    assert caught.value.status == 422
    assert refused in caught.value.body
