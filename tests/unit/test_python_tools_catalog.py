"""Python tools and registered guardrails in catalogs, workflows, submits and step specs:
ids only outside the catalog, every problem named by file and field. No CrewAI here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentic.catalog import load_catalog, load_workflow, validate_path
from agentic.contracts import RegisteredGuardrail, RunRequest, StepSpec, decode
from agentic.errors import CatalogError, DecodeError
from agentic.materialize import materialize
from agentic.preparation import prepare_run
from agentic.settings import Settings
from services.coordinator.intake import parse_request
from tests.factories import make_catalog, step_spec, task_yaml, workflow_yaml

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "python_tools"

WORD_COUNT = """\
id: word_count
description: Count words.
python: agentic.tools.demo_python:word_count
"""
PERIOD = "id: ends_with_period\npython: agentic.tools.demo_python:ends_with_period\n"


def catalog_with(tmp_path: Path, files: dict[str, str | None]) -> Path:
    return make_catalog(
        tmp_path,
        {"tools/word_count.yaml": WORD_COUNT, "guardrails/ends_with_period.yaml": PERIOD, **files},
    )


def problems_of(root: Path) -> list[str]:
    return [str(p) for p in validate_path(root)]


def test_the_fixture_catalog_loads_its_tools_guardrails_and_workflow() -> None:
    catalog = load_catalog([FIXTURE])
    assert sorted(catalog.tools) == ["shout", "web_search", "word_count"]
    assert catalog.tools["shout"].args == {"suffix": "${SHOUT_SUFFIX}"}
    assert catalog.tools["web_search"].crewai_tools == "SerperDevTool"
    assert list(catalog.guardrails) == ["ends_with_period"]
    assert (
        catalog.summary() == "1 agent provider, 0 MCP providers, 3 tools, 1 guardrail, 1 workflow"
    )
    wf = load_workflow("count_words", catalog)
    assert wf.tools == ["word_count"]
    assert wf.tasks[0].guardrail == RegisteredGuardrail(registered="ends_with_period")


def test_a_tool_needs_exactly_one_target_named_by_file_and_field(tmp_path: Path) -> None:
    root = catalog_with(
        tmp_path,
        {
            "tools/both.yaml": "id: both\npython: a.b:c\ncrewai_tools: SerperDevTool\n",
            "tools/none.yaml": "id: none\ndescription: nothing to import\n",
        },
    )
    problems = problems_of(root)
    for name in ("both", "none"):
        assert any(
            p.startswith(str(root / "tools" / f"{name}.yaml"))
            and "exactly one of 'python' or 'crewai_tools' is required" in p
            for p in problems
        ), problems


def test_a_malformed_import_path_and_an_unknown_field_are_named(tmp_path: Path) -> None:
    root = catalog_with(
        tmp_path,
        {
            "tools/bad.yaml": "id: bad\npython: 'os.system; rm -rf /'\n",
            "guardrails/typo.yaml": "id: typo\npyhton: a.b:c\n",
        },
    )
    problems = problems_of(root)
    assert any(f"{root / 'tools' / 'bad.yaml'}: python: " in p for p in problems), problems
    assert any(
        f"{root / 'guardrails' / 'typo.yaml'}: pyhton: unknown field (did you mean 'python'?)" in p
        for p in problems
    ), problems


def test_a_workflow_naming_an_unknown_tool_or_guardrail_is_refused_with_did_you_mean(
    tmp_path: Path,
) -> None:
    tasks = task_yaml("one", tools="[word_cont]") + task_yaml(
        "two", guardrail="{registered: ends_with_perod}"
    )
    root = catalog_with(
        tmp_path,
        {"workflows/flow.yaml": workflow_yaml(tasks, extra="  tools: [nope]\n")},
    )
    flow = root / "workflows" / "flow.yaml"
    assert problems_of(root) == [
        f"{flow}: workflow.tools[0]: unknown tool 'nope' (known: word_count)",
        f"{flow}: workflow.tasks[0].tools[0]: unknown tool 'word_cont' (did you mean "
        "'word_count'?)",
        f"{flow}: workflow.tasks[1].guardrail.registered: unknown guardrail "
        "'ends_with_perod' (did you mean 'ends_with_period'?)",
    ]
    with pytest.raises(CatalogError, match="unknown tool 'nope'"):
        load_workflow("flow", load_catalog([root]))


def test_a_broken_tool_file_is_reported_once_not_again_where_a_workflow_names_it(
    tmp_path: Path,
) -> None:
    root = catalog_with(
        tmp_path,
        {
            "tools/word_count.yaml": "id: word_count\n",
            "workflows/flow.yaml": workflow_yaml(task_yaml("one", tools="[word_count]")),
        },
    )
    problems = problems_of(root)
    assert len(problems) == 1 and "tools/word_count.yaml" in problems[0], problems


@pytest.mark.parametrize(
    ("task_fields", "reason"),
    [
        ({"tools": [{"python": "os:system", "id": "x"}]}, "a tool defined inline is refused"),
        ({"tools": ["os:system"]}, "an import path is refused here ('os:system')"),
        ({"guardrail": {"python": "os:system"}}, "a guardrail is a sentence or {registered"),
        ({"guardrail": {"registered": "a.b:c"}}, "an import path is refused here"),
        ({"python": "os:system"}, "'python' is refused here"),
    ],
)
def test_a_submit_that_carries_code_is_refused_with_its_reason_even_with_inline_allowed(
    task_fields: dict[str, object], reason: str
) -> None:
    task = {"id": "t", "agent_provider_id": "a", "description": "d", "expected_output": "e"}
    request = {"workflow": {"workflow": {"name": "w", "tasks": [{**task, **task_fields}]}}}
    raw = json.dumps(request).encode()
    with pytest.raises(DecodeError) as refused:
        parse_request(raw, settings=Settings(allow_inline_providers=True))
    assert reason in str(refused.value)
    assert "never defined in a workflow, a submit or a step" in str(refused.value)


def test_a_workflow_level_inline_tool_is_refused_too() -> None:
    body = {"name": "w", "tools": [{"id": "x", "python": "os:system"}], "tasks": []}
    with pytest.raises(ValueError, match="a tool defined inline is refused"):
        RunRequest.model_validate({"workflow": {"workflow": body}})


def test_a_step_spec_carrying_a_tool_mapping_or_import_path_does_not_decode() -> None:
    good = step_spec(tools=["word_count"], guardrail={"registered": "ends_with_period"})
    data = json.loads(good.model_dump_json())
    assert decode(StepSpec, json.dumps(data)) == good
    for bad in (
        {"tools": [{"id": "x", "python": "os:system"}]},
        {"tools": ["pkg.mod:fn"]},
        {"guardrail": {"registered": "x", "python": "os:system"}},
    ):
        with pytest.raises(DecodeError, match="never defined in a workflow, a submit or a step"):
            decode(StepSpec, json.dumps({**data, **bad}))


def test_specs_carry_tool_ids_the_workflow_default_a_task_override_or_none(
    tmp_path: Path,
) -> None:
    shout = "id: shout\npython: agentic.tools.demo_python:Shout\n"
    tasks = (
        task_yaml("inherits")
        + task_yaml("own", tools="[shout]", guardrail="'Be brief.'", guardrail_max_retries="0")
        + task_yaml("none", tools="[]", guardrail="{registered: ends_with_period}")
    )
    root = catalog_with(
        tmp_path,
        {
            "tools/shout.yaml": shout,
            "workflows/flow.yaml": workflow_yaml(tasks, extra="  tools: [word_count]\n"),
        },
    )
    wf = load_workflow("flow", load_catalog([root]))
    specs = materialize(wf, run_id="r", inputs={}, store_url="memory://s", settings=Settings())
    assert [(s.tools, s.guardrail, s.guardrail_max_retries) for s in specs] == [
        (["word_count"], None, None),
        (["shout"], "Be brief.", 0),
        ([], RegisteredGuardrail(registered="ends_with_period"), None),
    ]
    # ids only: nothing of the tool's entry (its import path) reaches the spec
    assert "demo_python" not in "".join(s.model_dump_json() for s in specs)


def test_a_submitted_resolved_workflow_naming_a_tool_its_catalog_lacks_is_refused(
    tmp_path: Path,
) -> None:
    root = catalog_with(
        tmp_path, {"workflows/flow.yaml": workflow_yaml(task_yaml("one", tools="[word_count]"))}
    )
    wf = load_workflow("flow", load_catalog([root]))
    request = RunRequest(workflow=wf.model_copy(update={"tools": ["shout"]}), backend="inprocess")
    with pytest.raises(CatalogError) as refused:
        prepare_run(request, settings=Settings(), catalog=load_catalog([root]))
    assert str(refused.value) == (
        "<request>.workflow: workflow.tools[0]: unknown tool 'shout' (known: word_count)"
    )
    assert (
        prepare_run(
            RunRequest(workflow=wf, backend="inprocess"),
            settings=Settings(),
            catalog=load_catalog([root]),
        ).workflow
        == wf
    )
