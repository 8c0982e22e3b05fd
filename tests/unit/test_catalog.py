"""The catalog loader: YAML files -> models, every problem named by file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentic.catalog import (
    Catalog,
    check_workflow,
    load_catalog,
    load_workflow,
    require_workflow_env,
    resolve_workflow,
    validate_path,
)
from agentic.contracts import WorkflowConfig
from agentic.errors import CatalogError, MissingEnvError
from agentic.graph import context, dependencies
from tests.factories import (
    EXAMPLE_CONFIG,
    SCRIPTED_AGENT,
    inline_agent_yaml,
    make_catalog,
    only_problem,
    problems_of,
    scripted_agent,
    task,
    task_yaml,
    workflow,
    workflow_yaml,
)

NO_ENV: dict[str, str] = {}


# --- the example catalog ---------------------------------------------------------------------


def test_the_example_catalog_loads_without_any_environment_variable():
    catalog = load_catalog([EXAMPLE_CONFIG], env=NO_ENV)

    assert set(catalog.agent_providers) == {
        "researcher",
        "writer",
        "editor",
        "planner",
        "openai_analyst",
        "ollama_local",
    }
    assert set(catalog.mcp_providers) == {"demo_tools", "remote_tools"}
    assert set(catalog.workflows) == {"demo", "parallel_demo"}
    assert validate_path(EXAMPLE_CONFIG) == []


def test_gated_providers_are_hidden_until_their_variables_are_set():
    catalog = load_catalog([EXAMPLE_CONFIG], env=NO_ENV)

    assert "openai_analyst" not in catalog.available_agent_providers(NO_ENV)
    assert "ollama_local" not in catalog.available_agent_providers(NO_ENV)
    assert "researcher" in catalog.available_agent_providers(NO_ENV)
    assert set(catalog.available_mcp_providers(NO_ENV)) == {"demo_tools"}

    env = {"OPENAI_API_KEY": "sk-test", "DEMO_MCP_URL": "http://127.0.0.1:1/mcp"}
    assert "openai_analyst" in catalog.available_agent_providers(env)
    assert "remote_tools" in catalog.available_mcp_providers(env)


def test_an_empty_variable_counts_as_missing():
    catalog = load_catalog([EXAMPLE_CONFIG], env=NO_ENV)

    assert "openai_analyst" not in catalog.available_agent_providers({"OPENAI_API_KEY": ""})


def test_a_workflow_resolves_the_same_by_name_and_by_path():
    catalog = load_catalog([EXAMPLE_CONFIG], env=NO_ENV)

    by_name = load_workflow("demo", catalog)
    by_path = load_workflow(str(EXAMPLE_CONFIG / "workflows" / "demo.yaml"), catalog)

    assert by_name == by_path
    assert by_name.task_sequence == ["research", "write", "edit"]
    assert [p.id for p in by_name.agent_providers] == ["researcher", "writer", "editor"]
    assert by_name.topic == "durable agent workflows"


def test_an_unknown_workflow_name_lists_the_known_ones():
    catalog = load_catalog([EXAMPLE_CONFIG], env=NO_ENV)

    known = r"unknown workflow 'dmeo' \(known: demo, parallel_demo\)"
    with pytest.raises(CatalogError, match=known):
        load_workflow("dmeo", catalog)


def test_a_missing_workflow_file_is_named():
    catalog = load_catalog([EXAMPLE_CONFIG], env=NO_ENV)

    with pytest.raises(CatalogError, match=r"nope\.yaml: no such workflow file"):
        load_workflow("nope.yaml", catalog)


# --- required_env gating -----------------------------------------------------------------------


def gated_workflow(tmp_path: Path) -> Path:
    return make_catalog(
        tmp_path,
        {
            "agent_providers/paid.yaml": """\
                id: paid
                type: openai
                model: gpt-4o-mini
                role: Analyst
                goal: Analyse
                backstory: Paid.
                required_env: [PAID_KEY]
            """,
            "mcp_providers/either.yaml": """\
                id: either
                required_env_any: [TOKEN_A, TOKEN_B]
                streamable_http:
                  url: "${EITHER_URL}"
                  headers: {Authorization: "Bearer ${TOKEN_A}"}
            """,
            "workflows/flow.yaml": """\
                workflow:
                  name: flow
                  agent_providers: [paid, alpha]
                  mcp_providers: [either]
                  tasks:
                    - {id: one, agent_provider_id: alpha, description: d, expected_output: e,
                       mcp_providers: []}
                    - {id: two, agent_provider_id: paid, description: d, expected_output: e}
            """,
        },
    )


def test_a_step_using_a_provider_with_a_missing_variable_is_refused_naming_it(tmp_path):
    catalog = load_catalog([gated_workflow(tmp_path)], env={"TOKEN_B": "x"})

    with pytest.raises(MissingEnvError, match=r"'paid' .*step 'two'.* needs PAID_KEY") as info:
        load_workflow("flow", catalog)
    assert info.value.variables == ["PAID_KEY"]
    assert info.value.entry_id == "paid"


def test_required_env_any_needs_one_of_its_variables(tmp_path):
    root = gated_workflow(tmp_path)
    catalog = load_catalog([root], env={"PAID_KEY": "k"})

    with pytest.raises(MissingEnvError, match=r"'either'.* needs one of TOKEN_A, TOKEN_B"):
        load_workflow("flow", catalog)
    assert "either" not in catalog.available_mcp_providers()
    assert "either" in catalog.available_mcp_providers({"TOKEN_B": "b"})
    assert load_workflow("flow", load_catalog([root], env={"PAID_KEY": "k", "TOKEN_B": "b"}))


def test_placeholders_stay_literal_in_loaded_models_even_when_the_variable_is_set(tmp_path):
    env = {"PAID_KEY": "k", "TOKEN_A": "secret-token-value", "EITHER_URL": "https://secret.example"}
    wf = load_workflow("flow", load_catalog([gated_workflow(tmp_path)], env=env))

    transport = wf.mcp_provider("either").streamable_http
    assert transport is not None
    assert transport.url == "${EITHER_URL}"
    assert transport.headers == {"Authorization": "Bearer ${TOKEN_A}"}
    assert "secret" not in wf.model_dump_json()


# --- several files, several roots ---------------------------------------------------------------


def test_the_same_id_in_two_files_of_one_directory_is_an_error(tmp_path):
    root = make_catalog(tmp_path, {"agent_providers/zeta.yaml": SCRIPTED_AGENT.format(id="alpha")})

    problem = only_problem(root)
    assert problem.file.endswith("agent_providers/zeta.yaml")
    assert problem.field == "id"
    assert "duplicate id 'alpha': also defined in" in problem.message
    assert "alpha.yaml" in problem.message


def test_a_later_catalog_root_overrides_ids_of_an_earlier_one(tmp_path):
    base = make_catalog(tmp_path / "base")
    extra = tmp_path / "extra"
    override = SCRIPTED_AGENT.format(id="alpha").replace("role: Tester", "role: Overrider")
    make_catalog(extra, {"agent_providers/alpha.yaml": override})

    catalog = load_catalog([base, extra], env=NO_ENV)

    assert catalog.agent_providers["alpha"].role == "Overrider"
    source = catalog.source_of("agent_providers", "alpha")
    assert source == str(extra / "agent_providers" / "alpha.yaml")


def test_a_missing_catalog_root_is_an_error_unless_allowed(tmp_path):
    with pytest.raises(CatalogError, match="catalog directory does not exist"):
        load_catalog([tmp_path / "nowhere"])
    assert load_catalog([tmp_path / "nowhere"], missing_ok=True).workflows == {}


def test_validate_reports_every_problem_not_only_the_first(tmp_path):
    root = make_catalog(
        tmp_path,
        {
            "agent_providers/alpha.yaml": SCRIPTED_AGENT.format(id="alpha") + "colour: red\n",
            "mcp_providers/tools.yaml": "id: tools\n",
            "workflows/other.yaml": "workflow: {name: other, tasks: []}\n",
        },
    )

    problems = problems_of(root)

    assert {(Path(p.file).name, p.field) for p in problems} == {
        ("alpha.yaml", "colour"),
        ("tools.yaml", None),
        ("other.yaml", "workflow.tasks"),
    }
    with pytest.raises(CatalogError, match=r"colour: unknown field \(and 2 more problems"):
        load_catalog([root])


def test_a_broken_provider_file_is_reported_once_not_again_by_its_workflows(tmp_path):
    root = make_catalog(tmp_path, {"agent_providers/alpha.yaml": "id: alpha\ntype: scripted\n"})

    assert {Path(p.file).name for p in problems_of(root)} == {"alpha.yaml"}


def test_validating_one_file_checks_it_against_its_own_catalog(tmp_path):
    tasks = task_yaml("one", "gamma")
    root = make_catalog(tmp_path, {"workflows/flow.yaml": workflow_yaml(tasks)})

    assert validate_path(root / "agent_providers" / "alpha.yaml") == []
    [problem] = validate_path(root / "workflows" / "flow.yaml")
    assert problem.field == "workflow.tasks[0].agent_provider_id"


# --- resolution ---------------------------------------------------------------------------------


def test_inline_providers_need_no_catalog_entry(tmp_path):
    agents = f"[{inline_agent_yaml('inline')}]"
    tasks = task_yaml("one", "inline")
    path = tmp_path / "standalone.yaml"
    path.write_text(workflow_yaml(tasks, agents=agents).replace("mcp_providers: [tools]", ""))

    wf = load_workflow(str(path), load_catalog([], env=NO_ENV))

    assert wf.provider("inline").type == "scripted"
    assert validate_path(path) == []


def test_a_task_may_use_a_catalog_provider_the_workflow_does_not_list(tmp_path):
    tasks = task_yaml("one", "beta")
    root = make_catalog(tmp_path, {"workflows/flow.yaml": workflow_yaml(tasks, agents="[]")})

    wf = load_workflow("flow", load_catalog([root], env=NO_ENV))

    assert [p.id for p in wf.agent_providers] == ["beta"]


def test_task_sequence_defaults_to_the_order_of_tasks(tmp_path):
    tasks = """\
        - {id: b, agent_provider_id: alpha, description: d, expected_output: e}
        - {id: a, agent_provider_id: alpha, description: d, expected_output: e}
    """
    root = make_catalog(tmp_path, {"workflows/flow.yaml": workflow_yaml(tasks)})

    assert load_workflow("flow", load_catalog([root], env=NO_ENV)).task_sequence == ["b", "a"]


def test_resolve_workflow_names_the_source_file_in_its_error(tmp_path):
    definition = load_catalog([make_catalog(tmp_path)], env=NO_ENV).workflows["flow"]

    with pytest.raises(CatalogError) as info:
        resolve_workflow(definition, Catalog(), source="flows/flow.yaml")

    assert str(info.value) == (
        "flows/flow.yaml: workflow.agent_providers[0]: "
        "unknown agent provider 'alpha' (the catalog has none)"
    )
    assert (info.value.file, info.value.field) == ("flows/flow.yaml", "workflow.agent_providers[0]")


# --- sequence vs. DAG ---------------------------------------------------------------------------


def test_without_depends_on_steps_form_a_chain_and_see_all_earlier_outputs():
    wf = load_workflow("demo", load_catalog([EXAMPLE_CONFIG], env=NO_ENV))

    assert dependencies(wf) == {"research": [], "write": ["research"], "edit": ["write"]}
    assert context(wf) == {
        "research": [],
        "write": ["research"],
        "edit": ["research", "write"],
    }


def test_with_depends_on_roots_run_first_and_steps_see_only_their_dependencies():
    wf = load_workflow("parallel_demo", load_catalog([EXAMPLE_CONFIG], env=NO_ENV))

    expected = {"benefits": [], "risks": [], "summary": ["benefits", "risks"]}
    assert dependencies(wf) == expected
    assert context(wf) == expected


def test_check_workflow_refuses_a_planned_workflow_with_a_cycle():
    wf = load_workflow("parallel_demo", load_catalog([EXAMPLE_CONFIG], env=NO_ENV))
    data = wf.model_dump()
    data["tasks"][0]["depends_on"] = ["summary"]
    planned = WorkflowConfig.model_validate(data)

    with pytest.raises(CatalogError, match="depends_on cycle: benefits -> summary -> benefits"):
        check_workflow(planned)


# --- fallback chains ---------------------------------------------------------------------------


def test_a_fallback_provider_is_embedded_from_the_catalog_and_the_legacy_key_is_a_chain(tmp_path):
    legacy = SCRIPTED_AGENT.format(id="alpha") + "exec_fallback_provider: backup\n"
    root = make_catalog(
        tmp_path,
        {
            "agent_providers/alpha.yaml": legacy,
            "agent_providers/backup.yaml": SCRIPTED_AGENT.format(id="backup"),
            "workflows/flow.yaml": workflow_yaml(task_yaml("one"), agents="[alpha]"),
        },
    )

    wf = load_workflow("flow", load_catalog([root], env=NO_ENV))

    assert wf.provider("alpha").fallback == ["backup"]
    assert [p.id for p in wf.agent_providers] == ["alpha", "backup"]
    assert wf.provider_chain("one") == ["alpha", "backup"]
    assert validate_path(root) == []


def test_a_fallback_naming_no_provider_is_an_error_naming_the_field(tmp_path):
    chained = SCRIPTED_AGENT.format(id="alpha") + "fallback: [nobody]\n"
    root = make_catalog(tmp_path, {"agent_providers/alpha.yaml": chained})

    with pytest.raises(CatalogError) as info:
        load_workflow("flow", load_catalog([root], env=NO_ENV))

    # The provider's own file is named, whether a workflow uses it or not.
    assert info.value.field == "fallback[0]"
    assert str(info.value.file).endswith("agent_providers/alpha.yaml")
    assert "falls back to unknown agent provider 'nobody'" in str(info.value)
    # An inline provider of a workflow: the workflow's field.
    inline = "[{id: solo, type: scripted, role: r, goal: g, backstory: b, script: {}, " + (
        "fallback: [nobody]}]"
    )
    path = tmp_path / "inline.yaml"
    text = workflow_yaml(task_yaml("one", "solo"), agents=inline)
    path.write_text(text.replace("mcp_providers: [tools]", ""))
    with pytest.raises(CatalogError) as info:
        load_workflow(str(path), load_catalog([], env=NO_ENV))
    assert info.value.field == "workflow.agent_providers[0].fallback[0]"


def test_a_provider_cannot_fall_back_to_itself_or_name_its_chain_twice(tmp_path):
    itself = SCRIPTED_AGENT.format(id="alpha") + "fallback: [alpha]\n"
    both = SCRIPTED_AGENT.format(id="beta") + "fallback: [alpha]\nexec_fallback_provider: gamma\n"
    root = make_catalog(
        tmp_path, {"agent_providers/alpha.yaml": itself, "agent_providers/beta.yaml": both}
    )

    found = [problem.message for problem in problems_of(root)]

    assert any("cannot fall back to itself" in message for message in found), found
    assert any("not both" in message for message in found), found


def test_a_fallback_providers_variables_are_required_as_the_tasks_own_are(tmp_path):
    gated = SCRIPTED_AGENT.format(id="backup") + "required_env: [BACKUP_KEY]\n"
    chained = SCRIPTED_AGENT.format(id="alpha") + "fallback: [backup]\n"
    root = make_catalog(
        tmp_path,
        {
            "agent_providers/alpha.yaml": chained,
            "agent_providers/backup.yaml": gated,
            "workflows/flow.yaml": workflow_yaml(task_yaml("one"), agents="[alpha]"),
        },
    )
    catalog = load_catalog([root], env={"BACKUP_KEY": "set"})
    wf = load_workflow("flow", catalog)

    with pytest.raises(MissingEnvError, match="BACKUP_KEY"):
        require_workflow_env(wf, {})


def test_a_copy_of_a_workflow_with_other_tasks_finds_its_own_tasks_and_providers() -> None:
    wf = workflow(task("a", "p", description="first"), agents=[scripted_agent("p")])
    assert wf.task("a").description == "first"  # the lookup is built on first use

    other = wf.model_copy(
        update={
            "tasks": [wf.tasks[0].model_copy(update={"description": "second"})],
            "agent_providers": [scripted_agent("p").model_copy(update={"role": "Other"})],
        }
    )

    assert other.task("a").description == "second" and other.provider("p").role == "Other"
    assert wf.task("a").description == "first" and wf.provider("p").role != "Other"
    with pytest.raises(KeyError):
        other.task("missing")
