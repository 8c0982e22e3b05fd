"""MCP servers as sidecars of step Jobs: the ``kubernetes`` backend against the API double.

The step's Job runs the real ``agentic execute-step``; its MCP provider's sidecar is the demo
MCP server (``agentic.tools.demo_mcp``) serving streamable HTTP, started by the double's
kubelet from the provider's image. The provider's stdio command exists nowhere, as on a
cluster whose step image lacks it: a tool answer can only have come from the sidecar.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from agentic.backends import get_backend
from agentic.contracts import MCPProvider, WorkflowConfig
from agentic.k8s.jobs import step_selector
from agentic.store import open_store
from agentic.tools.demo_mcp import FACTS
from tests.e2e.k8s_cluster import PVC, Cluster, cluster_settings
from tests.factories import one_step, scripted_agent
from tests.fixtures.servers import free_port
from tests.k8s_double import KubeDouble, wait_for
from tests.parity import run_workflow

pytestmark = [
    pytest.mark.slow,
    pytest.mark.k8s,
    pytest.mark.procs,
    pytest.mark.filterwarnings("ignore::ImportWarning"),
]

MCP_IMAGE = "registry.example.com/mcp/agentic-demo-mcp:1"
LOOKUP = [{"tool": "lookup_fact", "args": {"topic": "{topic}"}}, "Fact: {tool_result}"]


@pytest.fixture
def cluster(k8s_double: KubeDouble, k8s_api_client: Any, tmp_path: Path) -> Cluster:
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    k8s_double.add_pvc(PVC, store_dir)
    # The image's entrypoint: the demo MCP server (its args make it serve HTTP).
    k8s_double.add_image(MCP_IMAGE, [sys.executable, "-m", "agentic.tools.demo_mcp"])
    settings = cluster_settings(store_dir, k8s_pod_start_grace_s=0.5)
    return Cluster(k8s_double, k8s_api_client, str(store_dir), settings)


def facts_workflow(port: int) -> WorkflowConfig:
    facts = MCPProvider(
        id="facts",
        description="Facts, from a server that only its image holds.",
        stdio={"command": "agentic-facts-server-not-in-the-step-image"},
        kubernetes={"image": MCP_IMAGE, "args": ["--http", "--port", str(port)], "port": port},
    )
    wf = one_step(scripted_agent("researcher", LOOKUP), topic="kubernetes")
    return wf.model_copy(update={"mcp_providers": [facts]})


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_a_step_calls_a_tool_of_its_mcp_sidecar_and_the_answer_lands_in_the_output(
    cluster: Cluster,
) -> None:
    port = free_port()
    backend = get_backend("kubernetes", api_client=cluster.api_client)

    run = run_workflow(
        backend, facts_workflow(port), {}, cluster.store_url, settings=cluster.settings
    )

    assert run.record.status == "succeeded", run.record.error
    assert run.outputs["only"] == f"Fact: {FACTS['kubernetes']}"
    [job] = cluster.jobs(step_selector(run.record.run_id))
    [init] = job["spec"]["template"]["spec"]["initContainers"]
    assert init["image"] == MCP_IMAGE and init["restartPolicy"] == "Always"
    [pod] = cluster.pods(step_selector(run.record.run_id))
    [status] = pod.status.init_container_statuses
    assert status.state.terminated is not None, "the sidecar was not stopped after the step"
    assert not listening(port)


def test_a_sidecar_whose_image_cannot_be_pulled_fails_the_step_naming_it(
    cluster: Cluster,
) -> None:
    cluster.double.unpullable_images.add(MCP_IMAGE)
    backend = get_backend("kubernetes", api_client=cluster.api_client)

    run = run_workflow(
        backend, facts_workflow(free_port()), {}, cluster.store_url, settings=cluster.settings
    )

    assert run.record.status == "failed"
    [attempt] = open_store(cluster.store_url).read_attempts(run.record.run_id, "only")
    assert attempt.error is not None and attempt.error.type == "PodStartFailed"
    assert not attempt.error.retryable
    assert "MCP sidecar mcp-0-facts" in attempt.error.message
    assert MCP_IMAGE in attempt.error.message
    # The pod that never started went with its Job.
    assert wait_for(lambda: not cluster.pods(step_selector(run.record.run_id)), timeout=5)
