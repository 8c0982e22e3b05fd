"""One clear problem per catalog mistake, naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentic.catalog import load_catalog
from agentic.catalog.safe_yaml import MAX_DEPTH, MAX_EXPANDED_NODES
from tests.factories import (
    SCRIPTED_AGENT,
    alias_bomb,
    inline_agent_yaml,
    make_catalog,
    only_problem,
    problems_of,
    task_yaml,
    workflow_yaml,
)


def test_malformed_yaml_names_the_file_and_the_line(tmp_path):
    root = make_catalog(tmp_path, {"agent_providers/alpha.yaml": "id: alpha\nrole: a: b\n"})

    problem = only_problem(root)
    assert problem.file.endswith("agent_providers/alpha.yaml")
    assert problem.field == "line 2, column 8"
    assert "malformed YAML" in problem.message


def test_a_key_written_twice_is_an_error_instead_of_silently_winning(tmp_path):
    text = SCRIPTED_AGENT.format(id="alpha") + "role: Other\n"
    problem = only_problem(make_catalog(tmp_path, {"agent_providers/alpha.yaml": text}))

    assert problem.field == "line 8, column 1"
    assert "'role' appears twice" in problem.message


def test_an_alias_bomb_is_refused_naming_the_file_and_the_line_before_it_expands(tmp_path):
    bomb = alias_bomb()  # 10 ** 10 strings once expanded
    assert len(bomb) < 1000
    problem = only_problem(make_catalog(tmp_path, {"agent_providers/alpha.yaml": bomb}))

    assert problem.file.endswith("agent_providers/alpha.yaml")
    # level 4: 111,111 nodes, the first level over the bound
    assert problem.field == "line 5, column 5"
    expected = f"YAML expands to more than {MAX_EXPANDED_NODES} nodes once its aliases are expanded"
    assert problem.message == expected


def test_an_alias_that_contains_itself_is_refused(tmp_path):
    text = SCRIPTED_AGENT.format(id="alpha") + "tags: &loop [a, *loop]\n"
    problem = only_problem(make_catalog(tmp_path, {"agent_providers/alpha.yaml": text}))

    assert problem.field == "line 8, column 7"
    assert problem.message == "a YAML alias refers to a node that contains it"


def test_nesting_too_deep_is_refused_naming_the_line_instead_of_a_recursion_error(tmp_path):
    text = SCRIPTED_AGENT.format(id="alpha") + "tags:\n  - " + "[" * 1000 + "]" * 1000 + "\n"
    problem = only_problem(make_catalog(tmp_path, {"agent_providers/alpha.yaml": text}))

    assert problem.field == "line 9, column 103"
    assert problem.message == f"YAML nests lists and mappings more than {MAX_DEPTH} levels deep"


def test_an_anchor_reused_by_an_alias_still_works(tmp_path):
    tasks = """\
        - id: one
          agent_provider_id: alpha
          description: &brief Study {topic} and write down what matters
          expected_output: notes
        - {id: two, agent_provider_id: beta, description: *brief, expected_output: text}
    """
    root = make_catalog(tmp_path, {"workflows/flow.yaml": workflow_yaml(tasks)})

    assert problems_of(root) == []
    wf = load_catalog([root]).workflows["flow"].workflow
    assert wf.tasks[1].description == wf.tasks[0].description
    assert wf.tasks[1].description.startswith("Study")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", "the file is empty"), ("- a\n- b\n", "expected a mapping of fields, got a list")],
)
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path, text, expected):
    problem = only_problem(make_catalog(tmp_path, {"mcp_providers/tools.yaml": text}))

    assert problem.file.endswith("mcp_providers/tools.yaml")
    assert expected in problem.message


def test_an_unknown_field_is_named(tmp_path):
    text = SCRIPTED_AGENT.format(id="alpha") + "temprature: 0.3\n"
    problem = only_problem(make_catalog(tmp_path, {"agent_providers/alpha.yaml": text}))

    message = "unknown field (did you mean 'temperature'?)"
    assert (problem.field, problem.message) == ("temprature", message)
    assert str(problem).endswith(f"agent_providers/alpha.yaml: temprature: {message}")


def test_a_missing_required_field_is_named(tmp_path):
    text = SCRIPTED_AGENT.format(id="alpha").replace("goal: Test {topic}\n", "")
    problem = only_problem(make_catalog(tmp_path, {"agent_providers/alpha.yaml": text}))

    assert (problem.field, problem.message) == ("goal", "required field is missing")


def test_a_wrong_type_is_named_with_the_value(tmp_path):
    tasks = """\
        - {id: one, agent_provider_id: alpha, description: d, expected_output: e, timeout_s: soon}
    """
    problem = only_problem(make_catalog(tmp_path, {"workflows/flow.yaml": workflow_yaml(tasks)}))

    assert problem.field == "workflow.tasks[0].timeout_s"
    assert "valid number" in problem.message
    assert "(got 'soon')" in problem.message


def test_an_invalid_inline_provider_reports_its_own_fields_only(tmp_path):
    agents = f"[{inline_agent_yaml('inline', script='{replies: [{tol: x}]}')}]"
    tasks = task_yaml("one", "inline")
    root = make_catalog(tmp_path, {"workflows/flow.yaml": workflow_yaml(tasks, agents=agents)})

    assert [(p.field, p.message) for p in problems_of(root)] == [
        ("workflow.agent_providers[0].script.replies[0].tool", "required field is missing"),
        (
            "workflow.agent_providers[0].script.replies[0].tol",
            "unknown field (did you mean 'tool'?)",
        ),
    ]


def test_an_unknown_agent_provider_in_a_task_is_named(tmp_path):
    tasks = task_yaml("one", "gamma")
    problem = only_problem(make_catalog(tmp_path, {"workflows/flow.yaml": workflow_yaml(tasks)}))

    assert problem.file.endswith("workflows/flow.yaml")
    assert problem.field == "workflow.tasks[0].agent_provider_id"
    assert problem.message == "unknown agent provider 'gamma'"


def test_an_unknown_agent_provider_in_the_list_is_named_once_with_the_known_ids(tmp_path):
    tasks = task_yaml("one", "gamma")
    text = workflow_yaml(tasks, agents="[alpha, gamma]")
    problem = only_problem(make_catalog(tmp_path, {"workflows/flow.yaml": text}))

    assert problem.field == "workflow.agent_providers[1]"
    assert problem.message == "unknown agent provider 'gamma' (known: alpha, beta)"


def test_an_unknown_mcp_provider_is_named(tmp_path):
    text = workflow_yaml(task_yaml("one")).replace(
        "mcp_providers: [tools]", "mcp_providers: [tools, web]"
    )
    problem = only_problem(make_catalog(tmp_path, {"workflows/flow.yaml": text}))

    assert (problem.field, problem.message) == (
        "workflow.mcp_providers[1]",
        "unknown MCP provider 'web' (known: tools)",
    )


def test_a_task_mcp_provider_must_be_one_of_the_workflows(tmp_path):
    tasks = task_yaml("one", mcp_providers="[web]")
    problem = only_problem(make_catalog(tmp_path, {"workflows/flow.yaml": workflow_yaml(tasks)}))

    assert problem.field == "workflow.tasks[0].mcp_providers[0]"
    assert "'web' is not one of the workflow's mcp_providers" in problem.message


def test_task_sequence_naming_unknown_tasks_or_missing_some_is_refused(tmp_path):
    tasks = """\
        - {id: one, agent_provider_id: alpha, description: d, expected_output: e}
        - {id: two, agent_provider_id: beta, description: d, expected_output: e}
    """
    text = workflow_yaml(tasks, extra="  task_sequence: [one, three]\n")
    problems = problems_of(make_catalog(tmp_path, {"workflows/flow.yaml": text}))

    assert [(p.field, p.message) for p in problems] == [
        ("workflow.task_sequence", "names unknown task(s) 'three'"),
        ("workflow.task_sequence", "does not list task(s) 'two'"),
    ]


def test_duplicate_task_ids_are_refused(tmp_path):
    tasks = """\
        - {id: one, agent_provider_id: alpha, description: d, expected_output: e}
        - {id: one, agent_provider_id: beta, description: d, expected_output: e}
    """
    problem = only_problem(make_catalog(tmp_path, {"workflows/flow.yaml": workflow_yaml(tasks)}))

    assert (problem.field, problem.message) == ("workflow.tasks[1].id", "duplicate task id 'one'")


def test_a_depends_on_cycle_is_named_step_by_step(tmp_path):
    tasks = """\
        - {id: a, agent_provider_id: alpha, description: d, expected_output: e, depends_on: [c]}
        - {id: b, agent_provider_id: alpha, description: d, expected_output: e, depends_on: [a]}
        - {id: c, agent_provider_id: alpha, description: d, expected_output: e, depends_on: [b]}
    """
    problem = only_problem(make_catalog(tmp_path, {"workflows/flow.yaml": workflow_yaml(tasks)}))

    assert problem.field == "workflow.tasks[0].depends_on"
    assert problem.message == "depends_on cycle: a -> c -> b -> a"


def test_a_step_depending_on_itself_is_a_cycle(tmp_path):
    tasks = task_yaml("a", depends_on="[a]")
    problem = only_problem(make_catalog(tmp_path, {"workflows/flow.yaml": workflow_yaml(tasks)}))

    assert problem.message == "depends_on cycle: a -> a"


def test_depends_on_an_unknown_task_is_refused(tmp_path):
    tasks = task_yaml("a", depends_on="[zz]")
    problem = only_problem(make_catalog(tmp_path, {"workflows/flow.yaml": workflow_yaml(tasks)}))

    assert (problem.field, problem.message) == ("workflow.tasks[0].depends_on", "unknown task 'zz'")


def test_a_dependency_must_come_earlier_in_the_sequence(tmp_path):
    tasks = """\
        - {id: join, agent_provider_id: alpha, description: d, expected_output: e, depends_on: [a]}
        - {id: a, agent_provider_id: alpha, description: d, expected_output: e}
    """
    problem = only_problem(make_catalog(tmp_path, {"workflows/flow.yaml": workflow_yaml(tasks)}))

    assert problem.message == "depends on 'a', which comes later in task_sequence"


@pytest.mark.parametrize("bad_id", ["../x", "has space", "a" * 200])
def test_unsafe_ids_are_refused_wherever_they_appear(tmp_path, bad_id):
    agent = SCRIPTED_AGENT.format(id=f'"{bad_id}"')
    tasks = task_yaml(f'"{bad_id}"')
    root = make_catalog(
        tmp_path,
        {
            "agent_providers/gamma.yaml": agent,
            "workflows/flow.yaml": workflow_yaml(tasks).replace("name: flow", f'name: "{bad_id}"'),
        },
    )

    fields = {(Path(p.file).name, p.field) for p in problems_of(root)}
    assert fields == {
        ("gamma.yaml", "id"),
        ("flow.yaml", "workflow.name"),
        ("flow.yaml", "workflow.tasks[0].id"),
    }


def test_an_unsafe_pool_is_refused_because_it_becomes_a_subject(tmp_path):
    tasks = task_yaml("one", pool="'gpu.>'")
    problem = only_problem(make_catalog(tmp_path, {"workflows/flow.yaml": workflow_yaml(tasks)}))

    assert problem.field == "workflow.tasks[0].pool"
