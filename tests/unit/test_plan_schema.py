"""The plan format: parsing a planner reply, the checks the schema cannot make, the mapping
to a workflow, what the planner is offered and what its prompt says."""

from __future__ import annotations

import json

import pytest
import yaml

from agentic.catalog import check_workflow, load_catalog
from agentic.contracts import MCPProvider
from agentic.planning import (
    Offer,
    Plan,
    PlanSyntaxError,
    build_planner_prompt,
    offer_for,
    parse_plan,
    plan_problems,
    plan_workflow,
)
from agentic.planning.model import json_escaped
from agentic.planning.sessions import SessionEntry
from agentic.schemas_export import SCHEMA_DIR
from tests.factories import EXAMPLE_CONFIG, make_catalog, plan_step, scripted_agent


def stdio(mcp_id: str, **fields: object) -> MCPProvider:
    return MCPProvider(id=mcp_id, stdio={"command": "python"}, **fields)


OFFER = Offer(
    agents={"alpha": scripted_agent("alpha", ["ok"]), "beta": scripted_agent("beta", ["ok"])},
    mcps={"tools": stdio("tools")},
    inputs=("topic",),
    max_steps=3,
)


def plan_of(*steps: dict[str, object], **fields: object) -> Plan:
    return Plan.model_validate({"steps": list(steps), **fields})


# --- parsing ---------------------------------------------------------------------------------


def test_a_plan_inside_a_json_fence_with_prose_around_it_is_parsed():
    body = json.dumps({"steps": [plan_step("a")]})
    raw = f"Here is the plan:\n```json\n{body}\n```\nGood luck."

    assert [s.id for s in parse_plan(raw).steps] == ["a"]


def test_a_plan_after_a_react_final_answer_is_parsed():
    raw = "Thought: I now know the final answer.\nFinal Answer: " + json.dumps(
        {"steps": [plan_step("a"), plan_step("b")]}
    )

    assert [s.id for s in parse_plan(raw).steps] == ["a", "b"]


def test_a_reply_that_is_not_json_says_so():
    with pytest.raises(PlanSyntaxError, match="not valid JSON"):
        parse_plan("I would research first, then write.")


def test_schema_problems_name_the_field():
    raw = json.dumps({"steps": [{"id": "a", "agent_provider_id": "alpha", "colour": "red"}]})

    with pytest.raises(PlanSyntaxError) as caught:
        parse_plan(raw)

    problems = " | ".join(caught.value.problems)
    assert "steps.0.description: Field required" in problems
    assert "steps.0.colour: Extra inputs are not permitted" in problems


def test_a_plan_without_steps_must_say_it_is_done():
    with pytest.raises(PlanSyntaxError, match="at least one step"):
        parse_plan('{"steps": []}')
    assert parse_plan('{"done": true, "final_answer": "42"}').final_answer == "42"


def test_an_unsafe_step_id_is_refused_by_the_schema():
    with pytest.raises(PlanSyntaxError, match=r"steps\.0\.id"):
        parse_plan(json.dumps({"steps": [plan_step("../etc")]}))


# --- semantic checks -------------------------------------------------------------------------


def test_a_good_plan_has_no_problems():
    plan = plan_of(
        plan_step("a", mcp_providers=["tools"]), plan_step("b", "beta", depends_on=["a"])
    )

    assert plan_problems(plan, OFFER) == []


def test_an_unknown_agent_is_named_with_the_offered_ones():
    [problem] = plan_problems(plan_of(plan_step("a", "gamma")), OFFER)

    assert problem == "step 'a': unknown agent 'gamma' (offered: alpha, beta)"


def test_an_unknown_tool_provider_is_named():
    [problem] = plan_problems(plan_of(plan_step("a", mcp_providers=["web"])), OFFER)

    assert problem == "step 'a': unknown tool provider 'web' (offered: tools)"


def test_a_cycle_is_shown_as_a_path():
    plan = plan_of(
        plan_step("a", depends_on=["c"]),
        plan_step("b", depends_on=["a"]),
        plan_step("c", depends_on=["b"]),
    )

    assert plan_problems(plan, OFFER) == ["the dependencies form a cycle: a -> c -> b -> a"]


def test_a_step_that_depends_on_itself_is_a_cycle():
    assert plan_problems(plan_of(plan_step("a", depends_on=["a"])), OFFER) == [
        "the dependencies form a cycle: a -> a"
    ]


def test_more_steps_than_the_limit_is_a_problem():
    plan = plan_of(*(plan_step(f"s{i}") for i in range(4)))

    assert plan_problems(plan, OFFER) == ["the plan has 4 steps; at most 3 allowed"]


def test_unknown_dependencies_and_duplicate_ids_are_problems():
    plan = plan_of(plan_step("a"), plan_step("a"), plan_step("b", depends_on=["zzz"]))

    assert plan_problems(plan, OFFER) == [
        "duplicate step ids: a",
        "step 'b': depends on unknown step 'zzz'",
    ]


def test_dependencies_may_name_steps_already_done_in_iterative_mode():
    plan = plan_of(plan_step("b", depends_on=["a"]))

    assert plan_problems(plan, OFFER, done_steps=["a"]) == []


def test_a_placeholder_that_is_not_an_input_would_break_the_crew_and_is_a_problem():
    plan = plan_of(plan_step("a", description="Study {topic} for {audience}"))

    [problem] = plan_problems(plan, OFFER)
    assert "{audience}, which is not an input (inputs: topic)" in problem


# --- mapping -----------------------------------------------------------------------------------


def test_a_plan_becomes_a_self_contained_workflow_in_dependency_order():
    plan = plan_of(
        plan_step("write", "beta", depends_on=["research"]),
        plan_step("research", mcp_providers=["tools"]),
    )

    wf = plan_workflow(plan.steps, OFFER, name="plan-x", topic="x")

    check_workflow(wf)
    assert wf.task_sequence == ["research", "write"]
    assert [p.id for p in wf.agent_providers] == ["alpha", "beta"]
    assert [p.id for p in wf.mcp_providers] == ["tools"]
    assert wf.task("research").mcp_providers == ["tools"]
    assert wf.task("write").mcp_providers == []  # no tools unless the step names them
    assert wf.task("write").depends_on == ["research"]


def test_a_plan_without_dependencies_maps_to_a_sequence():
    wf = plan_workflow(plan_of(plan_step("a"), plan_step("b")).steps, OFFER, name="p", topic="t")

    assert not wf.uses_depends_on
    assert wf.task_sequence == ["a", "b"]


# --- what is offered, and the prompt ---------------------------------------------------------


@pytest.fixture
def gated_catalog(tmp_path):
    root = make_catalog(
        tmp_path / "config",
        {
            "agent_providers/cloud.yaml": (
                "id: cloud\ntype: openai\nmodel: m\nrole: Cloud analyst\ngoal: g\nbackstory: b\n"
                "required_env: [CLOUD_KEY]\n"
            ),
            "agent_providers/planner.yaml": (
                "id: planner\ntype: scripted\nrole: Planner\ngoal: g\nbackstory: b\n"
                "script: {replies: ['{}']}\n"
            ),
            "mcp_providers/remote.yaml": (
                "id: remote\ndescription: Remote search\nstreamable_http: {url: 'http://x/mcp'}\n"
            ),
            "mcp_providers/secret.yaml": (
                "id: secret\nrequired_env: [SECRET_URL]\nstreamable_http: {url: '${SECRET_URL}'}\n"
            ),
        },
    )
    return load_catalog([root], env={})


def test_entries_whose_required_env_is_missing_are_not_offered(gated_catalog):
    offer = offer_for(gated_catalog, backend="inprocess", env={}, exclude_agents={"planner"})

    assert sorted(offer.agents) == ["alpha", "beta"]
    assert sorted(offer.mcps) == ["remote", "tools"]

    with_env = offer_for(gated_catalog, backend="inprocess", env={"CLOUD_KEY": "k"})
    assert "cloud" in with_env.agents


def test_stdio_tool_providers_are_not_offered_to_kubernetes_steps(gated_catalog):
    offer = offer_for(gated_catalog, backend="kubernetes", env={})

    assert sorted(offer.mcps) == ["remote"]
    prompt = build_planner_prompt(
        "g", gated_catalog, backend="kubernetes", env={}, session_history=[]
    )
    assert "- remote: Remote search" in prompt
    assert "- tools:" not in prompt


def test_the_prompt_lists_agents_hints_rules_and_the_session(gated_catalog):
    history = [
        SessionEntry(
            run_id="run-1", goal="first goal", steps=["a (alpha)"], final_answer="The answer: 7"
        )
    ]

    prompt = build_planner_prompt(
        "Write about gardens",
        gated_catalog,
        backend="inprocess",
        env={},
        session_history=history,
        exclude_agents={"planner"},
        max_steps=4,
    )

    assert "Goal:\nWrite about gardens" in prompt
    assert "- alpha: Tester. Goal: Test {topic}" in prompt
    assert "planner" not in prompt.split("Agents")[1].split("Tool providers")[0]
    assert "cloud" not in prompt
    assert "At most 4 steps" in prompt
    assert "1. Goal: first goal\n   Plan: a (alpha)\n   Final answer: The answer: 7" in prompt
    assert '"title":"Plan"' in prompt  # the schema itself is shown


def test_the_committed_plan_schema_is_the_models():
    committed = json.loads((SCHEMA_DIR / "Plan.json").read_text())

    assert committed == json.loads(json.dumps(Plan.model_json_schema()))
    assert committed["additionalProperties"] is False
    assert committed["$defs"]["PlanStep"]["required"] == [
        "id",
        "agent_provider_id",
        "description",
        "expected_output",
    ]


def test_the_example_planner_answers_any_goal_with_a_valid_three_step_plan():
    script = yaml.safe_load((EXAMPLE_CONFIG / "agent_providers" / "planner.yaml").read_text())
    goal = 'Explain "durable" workflows \\ in one page'
    reply = script["script"]["replies"][0]
    filled = reply.replace("{goal}", json_escaped(goal)).replace("{topic}", json_escaped(goal))
    catalog = load_catalog([EXAMPLE_CONFIG], env={})
    offer = offer_for(catalog, backend="inprocess", env={}, exclude_agents={"planner"})

    plan = parse_plan(filled)

    assert plan_problems(plan, offer) == []
    assert [s.id for s in plan.steps] == ["research", "write", "edit"]
    assert goal in plan.steps[0].description
