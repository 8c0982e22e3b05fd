"""The materializer: a resolved workflow + inputs -> self-contained, deterministic StepSpecs."""

from __future__ import annotations

import json

import pytest

from agentic.catalog import load_catalog, load_workflow
from agentic.contracts import StepSpec, encode
from agentic.errors import MissingEnvError, UnsafeIdError
from agentic.materialize import materialize, spec_fingerprint, with_attempt, with_prior_outputs
from agentic.settings import get_settings
from tests.factories import EXAMPLE_CONFIG, make_catalog, task_yaml, workflow_yaml

STORE = "memory://agentic-test"
NO_ENV: dict[str, str] = {}


def example(name: str, env: dict[str, str] | None = None):
    return load_workflow(name, load_catalog([EXAMPLE_CONFIG], env=env or NO_ENV))


def specs_of(name: str, inputs: dict[str, str] | None = None, **settings: object):
    return materialize(
        example(name),
        run_id="run-1",
        inputs=inputs or {},
        store_url=STORE,
        settings=get_settings(**settings),
        env=NO_ENV,
    )


def test_the_demo_becomes_one_spec_per_step_in_sequence_order():
    specs = specs_of("demo")

    assert [(s.step_id, s.step_index, s.attempt) for s in specs] == [
        ("research", 0, 1),
        ("write", 1, 1),
        ("edit", 2, 1),
    ]
    assert [s.depends_on for s in specs] == [[], ["research"], ["write"]]
    assert all(s.prior_outputs == {} and s.store_url == STORE for s in specs)
    assert specs[0].agent_provider["id"] == "researcher"
    assert [m.id for m in specs[0].mcp_providers] == ["demo_tools"]
    assert specs[1].mcp_providers == []


def test_the_topic_defaults_to_the_workflows_and_is_filled_into_the_task_text():
    research = specs_of("demo")[0]

    assert research.topic == "durable agent workflows"
    assert research.task.description.startswith("Research durable agent workflows.")
    assert "notes on durable agent workflows" in research.task.expected_output


def test_inputs_override_the_topic_and_fill_their_own_placeholders(tmp_path):
    tasks = """\
        - id: one
          agent_provider_id: alpha
          description: 'Compare {topic} for {audience}; reply as {"score": 1} and keep {unknown}.'
          expected_output: A {format} table
    """
    root = make_catalog(tmp_path, {"workflows/flow.yaml": workflow_yaml(tasks)})
    wf = load_workflow("flow", load_catalog([root], env=NO_ENV))
    inputs = {"topic": "queues", "audience": "SREs", "format": "markdown"}

    [spec] = materialize(
        wf, run_id="r1", inputs=inputs, store_url=STORE, settings=get_settings(), env=NO_ENV
    )

    assert spec.topic == "queues"
    assert spec.task.description == (
        'Compare queues for SREs; reply as {"score": 1} and keep {unknown}.'
    )
    assert spec.task.expected_output == "A markdown table"
    assert spec.inputs == inputs


def test_a_dag_workflow_keeps_its_explicit_dependencies():
    specs = specs_of("parallel_demo")

    assert {s.step_id: s.depends_on for s in specs} == {
        "benefits": [],
        "risks": [],
        "summary": ["benefits", "risks"],
    }


def test_pool_and_timeout_come_from_the_task_then_the_provider_then_the_settings(tmp_path):
    agent = "{id: gpu, type: scripted, role: r, goal: g, backstory: b, pool: gpu, script: {}}"
    tasks = (
        task_yaml("own", pool="fast", timeout_s="30")
        + task_yaml("provider", "gpu")
        + task_yaml("default")
    )
    root = make_catalog(
        tmp_path, {"workflows/flow.yaml": workflow_yaml(tasks, agents=f"[alpha, {agent}]")}
    )
    wf = load_workflow("flow", load_catalog([root], env=NO_ENV))
    settings = get_settings(default_pool="cpu", default_step_timeout_s=99)

    specs = materialize(wf, run_id="r1", inputs={}, store_url=STORE, settings=settings, env={})

    assert [(s.pool, s.timeout_s) for s in specs] == [("fast", 30), ("gpu", 99), ("cpu", 99)]


def test_the_agent_provider_is_embedded_as_its_json_dump():
    wf = example("demo")
    research = specs_of("demo")[0]

    dumped = wf.provider("researcher").model_dump(mode="json", exclude_none=True)
    assert research.agent_provider == dumped
    assert research.agent_provider["script"]["replies"][0]["tool"] == "lookup_fact"


def test_the_same_yaml_and_inputs_give_byte_identical_specs_whatever_the_backend():
    inputs = {"topic": "replay", "b": "2", "a": "1"}
    first = specs_of("demo", inputs, execution_backend="inprocess")
    second = specs_of("demo", dict(reversed(inputs.items())), execution_backend="nats")

    assert [encode(s) for s in first] == [encode(s) for s in second]
    assert [spec_fingerprint(s) for s in first] == [spec_fingerprint(s) for s in second]


def test_the_fingerprint_changes_when_the_spec_changes():
    spec = specs_of("demo")[0]

    assert spec_fingerprint(spec) != spec_fingerprint(specs_of("demo", {"topic": "other"})[0])
    assert spec_fingerprint(spec) != spec_fingerprint(with_attempt(spec, 2))
    assert len(spec_fingerprint(spec)) == 64


def test_a_secret_in_the_environment_never_reaches_a_spec(tmp_path):
    secrets = {
        "OPENAI_API_KEY": "sk-live-very-secret-key",
        "DEMO_MCP_URL": "https://secret-host.example/mcp",
        "DEMO_MCP_TOKEN": "tok-very-secret",
    }
    remote = """\
        id: remote_tools
        required_env: [DEMO_MCP_URL]
        streamable_http:
          url: ${DEMO_MCP_URL}
          headers: {Authorization: "Bearer ${DEMO_MCP_TOKEN}"}
    """
    root = make_catalog(tmp_path / "extra", {"mcp_providers/remote_tools.yaml": remote})
    text = workflow_yaml(
        task_yaml("analyze", "openai_analyst", mcp_providers="[remote_tools]"),
        agents="[openai_analyst]",
    ).replace("mcp_providers: [tools]", "mcp_providers: [remote_tools]")
    (root / "workflows" / "flow.yaml").write_text(text)
    catalog = load_catalog([EXAMPLE_CONFIG, root], env=secrets)

    specs = materialize(
        load_workflow("flow", catalog),
        run_id="r1",
        inputs={},
        store_url=STORE,
        settings=get_settings(),
        env=secrets,
    )

    raw = b"".join(encode(s) for s in specs).decode()
    assert "${DEMO_MCP_URL}" in raw
    assert "Bearer ${DEMO_MCP_TOKEN}" in raw
    assert "OPENAI_API_KEY" in raw  # the name of the variable, which the worker reads
    for value in secrets.values():
        assert value not in raw


def test_a_step_whose_provider_lacks_its_variable_is_refused_at_materialization():
    wf = example("demo")
    data = wf.model_dump()
    data["tasks"][0]["agent_provider_id"] = "openai_analyst"
    data["agent_providers"].append(example("demo").provider("researcher").model_dump())
    data["agent_providers"][-1].update(
        id="openai_analyst", type="openai", required_env=["OPENAI_API_KEY"], script=None
    )
    gated = type(wf).model_validate(data)

    with pytest.raises(MissingEnvError, match="OPENAI_API_KEY") as info:
        materialize(
            gated, run_id="r1", inputs={}, store_url=STORE, settings=get_settings(), env=NO_ENV
        )
    assert "step 'research'" in str(info.value)


def test_an_unsafe_run_id_is_refused_before_it_becomes_a_path():
    with pytest.raises(UnsafeIdError):
        materialize(
            example("demo"),
            run_id="../etc",
            inputs={},
            store_url=STORE,
            settings=get_settings(),
            env=NO_ENV,
        )


# --- prior outputs and attempts -------------------------------------------------------------


def test_prior_outputs_are_injected_under_one_heading_per_step():
    edit = specs_of("demo")[2]

    injected = with_prior_outputs(
        edit, {"research": "notes here", "write": "draft here"}, max_chars=100
    )

    description = injected.task.description
    assert description.startswith(edit.task.description)
    assert "## Output of step `research`\n\nnotes here" in description
    assert "## Output of step `write`\n\ndraft here" in description
    assert description.index("`research`") < description.index("`write`")
    assert injected.prior_outputs == {"research": "notes here", "write": "draft here"}
    assert injected.task.expected_output == edit.task.expected_output


def test_a_long_prior_output_is_cut_with_a_visible_note():
    write = specs_of("demo")[1]

    injected = with_prior_outputs(write, {"research": "x" * 50}, max_chars=10)

    capped = injected.prior_outputs["research"]
    assert capped.startswith("x" * 10 + "\n\n[… truncated: first 10 of 50 characters shown")
    assert "x" * 11 not in capped
    assert capped in injected.task.description


def test_injecting_again_replaces_the_earlier_outputs_instead_of_stacking_them():
    write = specs_of("demo")[1]

    once = with_prior_outputs(write, {"research": "old"}, max_chars=100)
    twice = with_prior_outputs(once, {"research": "new"}, max_chars=100)

    assert twice == with_prior_outputs(write, {"research": "new"}, max_chars=100)
    assert "old" not in twice.task.description


def test_with_attempt_changes_only_the_attempt():
    spec = specs_of("demo")[0]

    retried = with_attempt(spec, 3)

    assert retried.attempt == 3
    assert retried.model_dump(exclude={"attempt"}) == spec.model_dump(exclude={"attempt"})
    with pytest.raises(ValueError, match="attempt"):
        with_attempt(spec, 0)


def test_a_spec_survives_a_json_round_trip_unchanged():
    spec = with_prior_outputs(specs_of("demo")[1], {"research": "r"}, max_chars=10)

    assert StepSpec.model_validate(json.loads(encode(spec))) == spec
