"""From a RunRequest to a pending run record: resolution, validation and the goal seam."""

from __future__ import annotations

import re
import sys
import types

import pytest

from agentic.catalog import load_catalog
from agentic.contracts import ReplaySource, RunRequest, WorkflowConfig
from agentic.errors import CatalogError, ConfigError, MissingEnvError, UnsafeIdError
from agentic.preparation import (
    PlannedWorkflow,
    build_request,
    default_planner,
    load_run_catalog,
    parse_assignments,
    prepare_run,
)
from agentic.settings import Settings
from tests.factories import SCRIPTED_AGENT, make_catalog


@pytest.fixture
def catalog(tmp_path):
    return load_catalog([make_catalog(tmp_path / "config")])


@pytest.fixture
def settings():
    return Settings(execution_backend="subprocess")


def test_a_catalog_name_becomes_a_pending_record_with_every_step(catalog, settings):
    record = prepare_run(
        RunRequest(workflow_ref="flow", inputs={"topic": "x"}), settings=settings, catalog=catalog
    )
    assert record.status == "pending"
    assert record.workflow is not None and record.workflow.name == "flow"
    assert [s.step_id for s in record.steps] == ["one", "two"]
    assert {s.status for s in record.steps} == {"pending"}
    assert record.backend == "subprocess"  # the settings' default
    assert record.inputs == {"topic": "x"}
    assert record.run_id.startswith("run-")


def test_the_request_backend_and_run_id_win(catalog, settings):
    request = RunRequest(workflow_ref="flow", backend="inprocess", run_id="mine-1")
    record = prepare_run(request, settings=settings, catalog=catalog)
    assert (record.backend, record.run_id) == ("inprocess", "mine-1")


def test_two_requests_without_run_id_get_different_ids(catalog, settings):
    request = RunRequest(workflow_ref="flow")
    first = prepare_run(request, settings=settings, catalog=catalog)
    second = prepare_run(request, settings=settings, catalog=catalog)
    assert first.run_id != second.run_id


def test_an_unknown_workflow_is_a_config_error_naming_it(catalog, settings):
    with pytest.raises(CatalogError, match="unknown workflow 'nope'"):
        prepare_run(RunRequest(workflow_ref="nope"), settings=settings, catalog=catalog)


def test_an_input_name_that_cannot_be_a_placeholder_is_refused(catalog, settings):
    request = RunRequest(workflow_ref="flow", inputs={"my topic": "x"})
    with pytest.raises(ConfigError, match="input name 'my topic'"):
        prepare_run(request, settings=settings, catalog=catalog)


def test_a_placeholder_in_the_agent_of_a_step_needs_an_input_as_one_in_a_task_does(
    tmp_path, settings
):
    beta = SCRIPTED_AGENT.format(id="beta").replace("goal: Test", "goal: Convince {team} of")
    catalog = load_catalog([make_catalog(tmp_path / "config", {"agent_providers/beta.yaml": beta})])

    with pytest.raises(ConfigError) as refused:
        prepare_run(RunRequest(workflow_ref="flow"), settings=settings, catalog=catalog)
    given = RunRequest(workflow_ref="flow", inputs={"team": "ops"})

    assert str(refused.value) == (
        "agent provider 'beta' (goal) uses {team}, which no input fills (inputs: topic): "
        "pass --input team=…, or write it without braces"
    )
    assert prepare_run(given, settings=settings, catalog=catalog).inputs == {"team": "ops"}


def test_an_inline_resolved_workflow_runs_as_given(catalog, settings):
    resolved = prepare_run(RunRequest(workflow_ref="flow"), settings=settings, catalog=catalog)
    assert resolved.workflow is not None
    request = RunRequest(workflow=resolved.workflow)
    record = prepare_run(request, settings=settings, catalog=catalog)
    assert record.workflow == resolved.workflow


def test_a_replay_request_records_what_it_replays(catalog, settings):
    request = RunRequest(workflow_ref="flow", replay_of=ReplaySource(run_id="run-old"))
    record = prepare_run(request, settings=settings, catalog=catalog)
    assert record.replay_of == "run-old"


def test_a_goal_is_planned_by_the_planner_given(catalog, settings):
    flow = prepare_run(RunRequest(workflow_ref="flow"), settings=settings, catalog=catalog)
    seen: list[str] = []

    def planner(request, *, catalog, settings):
        seen.append(request.goal)
        assert isinstance(flow.workflow, WorkflowConfig)
        return PlannedWorkflow(flow.workflow, plan={"steps": 2})

    record = prepare_run(
        RunRequest(goal="write about x"), settings=settings, catalog=catalog, planner=planner
    )
    assert seen == ["write about x"]
    assert record.plan == {"steps": 2}
    assert [s.step_id for s in record.steps] == ["one", "two"]


def test_by_default_a_goal_goes_to_agentic_planning_plan_goal(catalog, settings, monkeypatch):
    flow = prepare_run(RunRequest(workflow_ref="flow"), settings=settings, catalog=catalog)
    module = types.ModuleType("agentic.planning")
    module.plan_goal = lambda request, *, catalog, settings: PlannedWorkflow(flow.workflow)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "agentic.planning", module)

    record = prepare_run(RunRequest(goal="g"), settings=settings, catalog=catalog)
    assert record.workflow == flow.workflow


def test_without_a_planner_module_a_goal_is_a_clear_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "agentic.planning", None)  # import fails as if absent
    try:
        default_planner()
    except ConfigError as exc:
        assert "--goal" in str(exc)
    except ModuleNotFoundError:
        pytest.fail("a missing planner must be a ConfigError, not a traceback")


def test_assignments_split_on_the_first_equals_sign():
    assert parse_assignments(["a=1", "b=x=y", "c="], "--input") == {"a": "1", "b": "x=y", "c": ""}


@pytest.mark.parametrize("bad", ["novalue", "=v", "1a=v", "a b=v"])
def test_a_malformed_assignment_names_the_option_and_the_item(bad):
    with pytest.raises(ConfigError, match=f"--input '{bad}'"):
        parse_assignments([bad], "--input")


def test_an_unsafe_run_id_is_refused_before_anything_else(catalog):
    with pytest.raises(UnsafeIdError, match=re.escape("unsafe run id '../etc'")):
        build_request("flow", catalog, run_id="../etc")


def test_an_unknown_backend_lists_the_valid_ones(catalog):
    with pytest.raises(ConfigError, match=r"unknown backend 'ray'.*inprocess"):
        build_request("flow", catalog, backend="ray")


def test_a_workflow_file_is_loaded_and_sent_inline(catalog, tmp_path):
    path = tmp_path / "config" / "workflows" / "flow.yaml"
    request = build_request(str(path), catalog)
    assert request.workflow_ref is None
    assert isinstance(request.workflow, WorkflowConfig) and request.workflow.name == "flow"


def test_a_missing_workflow_file_is_named(catalog, tmp_path):
    with pytest.raises(CatalogError, match=r"missing\.yaml"):
        build_request(str(tmp_path / "missing.yaml"), catalog)


@pytest.mark.parametrize("backend", ["nats", "kubernetes"])
def test_a_client_of_a_worker_backend_needs_no_provider_key_an_inprocess_run_does(
    tmp_path, monkeypatch, backend
):
    keyed = "id: alpha\ntype: scripted\nrole: r\ngoal: g\nbackstory: b\n"
    keyed += "required_env: [ALPHA_ONLY_ON_WORKERS]\nscript: {replies: [hi]}\n"
    # On kubernetes the workflow's stdio MCP server runs as a sidecar of its own image.
    tools = "id: tools\nstdio: {command: python}\nkubernetes: {image: 'tools:1', port: 8000}\n"
    files = {"agent_providers/alpha.yaml": keyed, "mcp_providers/tools.yaml": tools}
    make_catalog(tmp_path / "config", files)
    monkeypatch.setenv("AGENTIC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("ALPHA_ONLY_ON_WORKERS", raising=False)
    settings = Settings(execution_backend="inprocess")
    request = RunRequest(workflow_ref="flow", backend=backend)

    remote = prepare_run(
        request, settings=settings, catalog=load_run_catalog(settings, "flow", backend)
    )
    with pytest.raises(MissingEnvError, match="ALPHA_ONLY_ON_WORKERS"):
        prepare_run(
            RunRequest(workflow_ref="flow"),
            settings=settings,
            catalog=load_run_catalog(settings, "flow"),
        )

    assert remote.backend == backend and remote.workflow is not None
