"""Hierarchical crews (``process: hierarchical``): checked like any workflow, naming the
field, and resolved into one step, ``crew``, whose spec carries the whole crew."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from agentic.catalog import Catalog, load_catalog, load_workflow
from agentic.catalog.trust import spec_problem
from agentic.contracts import StepSpec, WorkflowConfig, WorkflowDefinition, encode
from agentic.hierarchical import CREW_STEP
from agentic.materialize import materialize
from agentic.settings import Settings
from tests.factories import SCRIPTED_AGENT, make_catalog, problems_of, task_yaml, workflow_yaml

CREW = {
    "agent_providers/lead.yaml": SCRIPTED_AGENT.format(id="lead"),
    "mcp_providers/more.yaml": "id: more\nstdio: {command: python, args: [-m, x]}\n",
}


def crew_yaml(tasks: str, *, manager: str = "lead", agents: str = "[lead, alpha, beta]") -> str:
    extra = f"  process: hierarchical\n  manager_provider: {manager}\n"
    return workflow_yaml(tasks, extra=extra, agents=agents).replace("[tools]", "[tools, more]")


def problems(root: Path, workflow: str) -> list[tuple[str | None, str]]:
    make_catalog(root, {**CREW, "workflows/flow.yaml": workflow})
    return [(p.field, p.message) for p in problems_of(root) if p.file.endswith("flow.yaml")]


def test_hierarchical_without_a_manager_is_an_error_naming_the_field() -> None:
    task = {"id": "t", "agent_provider_id": "a", "description": "d", "expected_output": "o"}
    body = {"name": "w", "tasks": [task], "process": "hierarchical"}
    with pytest.raises(ValidationError) as refused:
        WorkflowDefinition.model_validate({"workflow": body})
    (error,) = refused.value.errors()
    assert error["loc"] == ("workflow", "manager_provider")
    assert "required when process is hierarchical" in error["msg"]


def test_a_manager_that_is_no_agent_provider_is_refused_naming_the_field(tmp_path: Path) -> None:
    found = problems(tmp_path, crew_yaml(task_yaml("one"), manager="boss"))
    assert found == [("workflow.manager_provider", "unknown agent provider 'boss'")]


def test_a_crew_needs_a_coworker_besides_its_manager(tmp_path: Path) -> None:
    found = problems(tmp_path, crew_yaml(task_yaml("one", "lead"), agents="[lead]"))
    assert [field for field, _ in found] == ["workflow.agent_providers"]
    assert "needs a coworker for its manager 'lead'" in found[0][1]


def test_a_crew_task_is_checked_by_the_field_the_file_wrote(tmp_path: Path) -> None:
    tasks = task_yaml("one", depends_on="[two]") + task_yaml("two", "ghost")
    found = problems(tmp_path, crew_yaml(tasks))
    assert ("workflow.tasks[1].agent_provider_id", "unknown agent provider 'ghost'") in found
    later = "depends on 'two', which comes later in task_sequence"
    assert ("workflow.tasks[0].depends_on", later) in found


def test_tasks_of_one_crew_cannot_ask_for_two_pools(tmp_path: Path) -> None:
    tasks = task_yaml("one", pool="gpu") + task_yaml("two", pool="cpu")
    found = problems(tmp_path, crew_yaml(tasks))
    assert [field for field, _ in found] == ["workflow.tasks[1].pool"]
    assert "one step, in one pool: its tasks name 'gpu', 'cpu'" in found[0][1]


def resolved(tmp_path: Path, tasks: str, **options: str) -> tuple[Catalog, WorkflowConfig]:
    root = make_catalog(tmp_path, {**CREW, "workflows/flow.yaml": crew_yaml(tasks, **options)})
    catalog = load_catalog([root])
    return catalog, load_workflow("flow", catalog)


def test_a_crew_is_one_step_on_its_manager_holding_the_tasks_of_the_file(tmp_path: Path) -> None:
    tasks = task_yaml("one", timeout_s="30", retries="1") + task_yaml("two", "beta", timeout_s="20")
    _, wf = resolved(tmp_path, tasks, agents="[alpha]")  # the manager is pulled from the catalog
    assert wf.task_sequence == [CREW_STEP]
    (step,) = wf.tasks
    assert (step.agent_provider_id, step.timeout_s, step.retries) == ("lead", 50, 1)
    assert wf.crew is not None and wf.crew.manager_provider == "lead"
    assert wf.crew.coworkers == ["alpha", "beta"]
    assert [t.id for t in wf.crew.tasks] == wf.crew.task_sequence == ["one", "two"]
    # What a run stores: the crew (with process) for this workflow, nothing new otherwise.
    assert json.loads(wf.model_dump_json())["process"] == "hierarchical"


def test_the_crew_spec_carries_coworkers_tasks_and_their_mcp_providers(tmp_path: Path) -> None:
    tasks = (
        '- {id: plan, agent_provider_id: lead, description: "Plan {topic}", expected_output: e}\n'
        + task_yaml("dig", "alpha", mcp_providers="[more]")
        + task_yaml("write", "beta", depends_on="[plan]", mcp_providers="[]")
    )
    _, wf = resolved(tmp_path, tasks)
    (spec,) = materialize(
        wf, run_id="r1", inputs={"topic": "tides"}, store_url="memory://x", settings=Settings()
    )
    assert spec.step_id == CREW_STEP and spec.agent_provider["id"] == "lead"
    assert spec.crew is not None
    members = {m.agent_provider["id"]: m.mcp_providers for m in spec.crew.coworkers}
    assert members == {"alpha": ["more"], "beta": []}
    assert [m.id for m in spec.mcp_providers] == ["more"]  # the coworkers', checked by workers
    plan, dig, write = spec.crew.tasks
    assert (plan.description, plan.agent_provider_id) == ("Plan tides", None)  # the manager's
    assert (dig.agent_provider_id, write.agent_provider_id) == ("alpha", "beta")
    assert (plan.context, dig.context, write.context) == ([], [], ["plan"])
    assert StepSpec.model_validate_json(encode(spec)) == spec


def test_a_sequential_spec_and_workflow_are_written_as_before(tmp_path: Path) -> None:
    root = make_catalog(tmp_path)
    wf = load_workflow("flow", load_catalog([root]))
    spec = materialize(wf, run_id="r1", inputs={}, store_url="memory://x", settings=Settings())[0]
    assert "crew" not in json.loads(encode(spec))
    assert not {"process", "crew"} & set(json.loads(wf.model_dump_json()))


def test_a_worker_refuses_a_crew_whose_coworker_is_not_its_catalog_entry(tmp_path: Path) -> None:
    catalog, wf = resolved(tmp_path, task_yaml("one", "lead") + task_yaml("two", "beta"))
    spec = materialize(wf, run_id="r1", inputs={}, store_url="memory://x", settings=Settings())[0]
    assert spec_problem(spec, catalog) is None
    assert spec.crew is not None
    forged = dict(spec.crew.coworkers[0].agent_provider, base_url="http://evil")
    crew = spec.crew.model_copy(
        update={"coworkers": [spec.crew.coworkers[0].model_copy(update={"agent_provider": forged})]}
    )
    problem = spec_problem(spec.model_copy(update={"crew": crew}), catalog)
    assert problem == "agent provider 'alpha' differs from this worker's catalog entry"
    unknown = crew.coworkers[0].model_copy(update={"agent_provider": {**forged, "id": "mole"}})
    stranger = spec.crew.model_copy(update={"coworkers": [unknown]})
    problem = spec_problem(spec.model_copy(update={"crew": stranger}), catalog)
    assert problem == "agent provider 'mole' is not in this worker's catalog"
