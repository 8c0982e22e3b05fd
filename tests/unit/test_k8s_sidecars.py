"""MCP servers as sidecars on Kubernetes: the step Job's manifest, where a provider can run,
and the refusal of a stdio provider without an image before a run exists."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from agentic.catalog import Catalog, load_catalog, load_workflow
from agentic.catalog.placement import check_runs_on, runs_on
from agentic.catalog.trust import spec_problem, workflow_problems
from agentic.contracts import MCPProvider, RunRequest, WorkflowConfig
from agentic.contracts.messages import ResolvedMCP, TaskText
from agentic.errors import ConfigError
from agentic.k8s.jobs import container_security_context, step_job_manifest
from agentic.k8s.sidecars import container_name
from agentic.materialize import materialize
from agentic.names import MCP_SIDECARS_ENV
from agentic.planning.prompt import offer_for
from agentic.preparation import PlannedWorkflow, prepare_run
from agentic.settings import Settings, get_settings
from tests.factories import EXAMPLE_CONFIG, one_step, scripted_agent, step_spec

pytestmark = pytest.mark.k8s

K8S_VERSION = "1.31.0"  # native sidecars exist from 1.29; the tests' schemas are 1.31's
STORE = "/var/lib/agentic/store"
IMAGE = "ghcr.io/example/facts-mcp:1.2"
FAKE_TOKEN = "ghp-fake-0123456789-never-in-a-manifest"
STDIO = {"command": "facts-mcp", "args": ["--stdio"]}


def settings(**overrides: Any) -> Settings:
    base = {"k8s_store_pvc": "agentic-store", "k8s_secret_name": "agentic-secrets"}
    return get_settings(run_store_url=STORE, **{**base, **overrides})


def provider(mcp_id: str = "facts", **fields: Any) -> dict[str, Any]:
    """An MCP provider entry (JSON data): stdio, with a sidecar unless ``kubernetes=None``."""
    sidecar = {"image": IMAGE, "args": ["--http", "--port", "8931"], "port": 8931}
    data = {"id": mcp_id, "stdio": STDIO, "kubernetes": sidecar, **fields}
    return {k: v for k, v in data.items() if v is not None}


def manifest(*providers: dict[str, Any], conf: Settings | None = None) -> dict[str, Any]:
    spec = step_spec(
        run_id="run-sidecars",
        task=TaskText(description="Look it up", expected_output="a fact"),
        store_url=STORE,
        mcp_providers=[ResolvedMCP(id=p["id"], resolved=p) for p in providers],
    )
    return step_job_manifest(spec, conf or settings(), spec_url=f"{STORE}/spec.json")


def pod(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


# --- the step Job ---------------------------------------------------------------------------
def test_a_sidecar_provider_runs_as_a_native_sidecar_and_the_step_learns_its_url() -> None:
    job = manifest(provider(kubernetes={"image": IMAGE, "port": 8931, "resources": {
        "limits": {"memory": "256Mi"}}}))  # fmt: skip

    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    [sidecar] = pod(job)["initContainers"]
    assert sidecar["name"] == "mcp-0-facts"
    assert sidecar["image"] == IMAGE and sidecar["restartPolicy"] == "Always"
    assert "command" not in sidecar, "unset: the image's own entrypoint"
    assert sidecar["ports"] == [{"containerPort": 8931, "protocol": "TCP"}]
    assert sidecar["resources"] == {"limits": {"memory": "256Mi"}}
    # As locked down as the step's container, with a /tmp of its own.
    assert sidecar["securityContext"] == container_security_context()
    [mount] = sidecar["volumeMounts"]
    assert mount["mountPath"] == "/tmp"
    assert {"name": mount["name"], "emptyDir": {}} in pod(job)["volumes"]
    [step] = pod(job)["containers"]
    assert json.loads(env_of(step)[MCP_SIDECARS_ENV]["value"]) == {
        "facts": "http://127.0.0.1:8931/mcp"
    }
    assert pod(job)["restartPolicy"] == "Never"  # the Job's own pod still never restarts


def test_sidecars_start_in_the_steps_order_and_http_providers_can_be_sidecars_too() -> None:
    http = provider(
        "search",
        stdio=None,
        streamable_http={"url": "https://search.example/mcp"},
        kubernetes={"image": "search:2", "command": ["serve"], "port": 9000, "path": "/rpc"},
    )
    unused = provider("quiet", tools=[], kubernetes={"image": "quiet:1", "port": 9001})
    remote = provider("remote", stdio=None, kubernetes=None,
                      streamable_http={"url": "https://remote.example/mcp"})  # fmt: skip
    job = manifest(provider(), http, unused, remote)

    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    names = [c["name"] for c in pod(job)["initContainers"]]
    assert names == ["mcp-0-facts", "mcp-1-search"]  # no tools offered: never started
    assert pod(job)["initContainers"][1]["command"] == ["serve"]
    urls = json.loads(env_of(pod(job)["containers"][0])[MCP_SIDECARS_ENV]["value"])
    assert urls == {"facts": "http://127.0.0.1:8931/mcp", "search": "http://127.0.0.1:9000/rpc"}


def test_a_step_without_sidecars_gets_no_init_containers_and_no_variable() -> None:
    job = manifest(provider("remote", stdio=None, kubernetes=None,
                            streamable_http={"url": "https://remote.example/mcp"}))  # fmt: skip
    assert "initContainers" not in pod(job)
    assert MCP_SIDECARS_ENV not in env_of(pod(job)["containers"][0])


def test_a_sidecars_secrets_are_references_and_placeholders_become_dependent_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("SEARCH_KEY", FAKE_TOKEN)
    sidecar_env = {
        "GH_TOKEN": "${GITHUB_TOKEN}",
        "AUTH": "Bearer ${GITHUB_TOKEN} costs $5",
        "MODE": "fast $(NOT_A_VARIABLE)",
    }
    job = manifest(
        provider(
            required_env=["SEARCH_KEY"],
            kubernetes={"image": IMAGE, "port": 8931, "env": sidecar_env},
        )
    )

    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    assert FAKE_TOKEN not in json.dumps(job)
    [sidecar] = pod(job)["initContainers"]
    names = [e["name"] for e in sidecar["env"]]
    env = env_of(sidecar)

    def key(name: str) -> str:
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "agentic-secrets" and ref["optional"] is True
        return str(ref["key"])

    assert key("SEARCH_KEY") == "SEARCH_KEY"
    assert key("GITHUB_TOKEN") == "GITHUB_TOKEN"
    assert key("GH_TOKEN") == "GITHUB_TOKEN"
    # Kubernetes expands $(VAR) from variables defined before; $$ is a literal $.
    assert env["AUTH"] == {"name": "AUTH", "value": "Bearer $(GITHUB_TOKEN) costs $$5"}
    assert names.index("GITHUB_TOKEN") < names.index("AUTH")
    assert env["MODE"]["value"] == "fast $$(NOT_A_VARIABLE)"
    assert env["HOME"] == {"name": "HOME", "value": "/tmp"}


def test_a_sidecar_that_needs_a_secret_without_one_configured_is_a_config_error() -> None:
    needy = provider(kubernetes={"image": IMAGE, "port": 1, "env": {"T": "${TOKEN}"}})
    with pytest.raises(ConfigError, match=r"'facts'.*TOKEN.*AGENTIC_K8S_SECRET_NAME"):
        manifest(needy, conf=settings(k8s_secret_name=None))


def test_two_sidecars_on_one_port_are_a_config_error_naming_both() -> None:
    with pytest.raises(ConfigError, match=r"'facts' and 'more' both listen on port 8931"):
        manifest(provider(), provider("more"))


def test_the_job_builder_refuses_a_stdio_provider_without_an_image() -> None:
    with pytest.raises(ConfigError, match=r"stdio MCP provider 'facts' has no kubernetes\.image"):
        manifest(provider(kubernetes=None))


def test_container_names_are_distinct_dns_labels_that_leave_room_for_their_volume() -> None:
    names = [container_name(pid, i) for i, pid in enumerate(["Facts", "facts", "x." * 60])]
    assert len(set(names)) == 3
    assert all(len(f"{n}-tmp") <= 63 and n == n.lower() and n[-1] != "-" for n in names)


@pytest.mark.parametrize(
    ("sidecar", "error"),
    [
        ({"image": IMAGE, "port": 80, "args": ["--key", "${KEY}"]}, "only in kubernetes.env"),
        ({"image": "has space:1", "port": 80}, "image"),
        ({"image": IMAGE, "port": 0}, "port"),
        ({"image": IMAGE, "port": 80, "path": "no-slash"}, "path"),
        ({"port": 80}, "image"),
    ],
)
def test_a_malformed_sidecar_is_a_catalog_error(sidecar: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        MCPProvider.model_validate(provider(kubernetes=sidecar))


# --- where a provider runs, and the refusal before a run exists ------------------------------
def facts_workflow(**facts: Any) -> WorkflowConfig:
    agent = scripted_agent("researcher")
    wf = one_step(agent, topic="kubernetes")
    return wf.model_copy(update={"mcp_providers": [MCPProvider.model_validate(provider(**facts))]})


def test_only_a_stdio_provider_without_an_image_cannot_run_on_kubernetes() -> None:
    bare = MCPProvider.model_validate(provider(kubernetes=None))
    imaged = MCPProvider.model_validate(provider())
    remote = MCPProvider(id="r", streamable_http={"url": "https://r.example/mcp"})
    assert not runs_on(bare, "kubernetes")
    assert runs_on(imaged, "kubernetes") and runs_on(remote, "kubernetes")
    assert all(runs_on(bare, b) for b in ("inprocess", "subprocess", "nats"))


def test_a_static_workflow_with_a_stdio_provider_is_refused_on_kubernetes_before_it_exists() -> (
    None
):
    request = RunRequest(workflow=facts_workflow(kubernetes=None), backend="kubernetes")

    with pytest.raises(ConfigError) as refused:
        prepare_run(request, settings=Settings(), catalog=Catalog())

    message = str(refused.value)
    assert "step 'only' uses the stdio MCP provider 'facts'" in message
    assert "'facts-mcp'" in message and "kubernetes: {image:" in message
    for backend in ("inprocess", "nats"):  # elsewhere the command runs where the step runs
        prepare_run(request.model_copy(update={"backend": backend}), settings=Settings(),
                    catalog=Catalog())  # fmt: skip
    ok = RunRequest(workflow=facts_workflow(), backend="kubernetes")
    assert prepare_run(ok, settings=Settings(), catalog=Catalog()).backend == "kubernetes"


def test_a_provider_no_step_starts_is_not_refused() -> None:
    wf = facts_workflow(kubernetes=None)
    check_runs_on(wf.model_copy(update={"tasks": [wf.tasks[0].model_copy(
        update={"mcp_providers": []})]}), "kubernetes")  # fmt: skip
    check_runs_on(facts_workflow(kubernetes=None, tools=[]), "kubernetes")


def test_a_planned_workflow_with_a_stdio_provider_is_refused_on_kubernetes_too() -> None:
    def planner(request: RunRequest, *, catalog: Catalog, settings: Settings) -> PlannedWorkflow:
        return PlannedWorkflow(facts_workflow(kubernetes=None))

    request = RunRequest(goal="a fact about kubernetes", backend="kubernetes")
    with pytest.raises(ConfigError, match="stdio MCP provider 'facts'"):
        prepare_run(request, settings=Settings(), catalog=Catalog(), planner=planner)


def test_the_planner_offers_kubernetes_steps_stdio_providers_only_with_an_image() -> None:
    catalog = Catalog(
        mcp_providers={
            "bare": MCPProvider.model_validate(provider("bare", kubernetes=None)),
            "imaged": MCPProvider.model_validate(provider("imaged")),
        }
    )
    assert sorted(offer_for(catalog, backend="kubernetes", env={}).mcps) == ["imaged"]
    assert sorted(offer_for(catalog, backend="nats", env={}).mcps) == ["bare", "imaged"]


def test_the_example_demo_workflow_can_run_on_kubernetes() -> None:
    catalog = load_catalog([EXAMPLE_CONFIG])
    check_runs_on(load_workflow("demo", catalog), "kubernetes")


# --- trust ------------------------------------------------------------------------------------
def test_a_sidecar_image_comes_only_from_the_catalog() -> None:
    catalog = load_catalog([EXAMPLE_CONFIG])
    demo = load_workflow("demo", catalog)
    tools = demo.mcp_provider("demo_tools")
    assert tools.kubernetes is not None
    evil = tools.model_copy(
        update={"kubernetes": tools.kubernetes.model_copy(update={"image": "evil/miner:1"})}
    )
    changed = demo.model_copy(update={"mcp_providers": [evil]})

    [(field, message)] = workflow_problems(changed, catalog)
    assert field == "workflow.mcp_providers[0]" and "kubernetes" in message
    spec, *_ = materialize(
        changed, run_id="r", inputs={}, store_url="memory://x", settings=Settings(), env={}
    )
    assert "differs from this worker's catalog entry" in (spec_problem(spec, catalog) or "")
