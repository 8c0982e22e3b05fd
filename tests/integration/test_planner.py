"""`agentic run --goal`: planning with the scripted planner, repair, failure, iterative mode,
sessions. The planner is a real CrewAI LLM (the scripted provider) called through the same
LLM layer as agents; its calls are observed with CrewAI's ``LLMCallStartedEvent``."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from agentic.cli import _register, app
from agentic.contracts import PlannerOptions, RunRequest
from agentic.execution import run_to_completion
from agentic.planning import read_session
from agentic.settings import Settings
from agentic.store import open_store
from tests.factories import EXAMPLE_CONFIG, make_catalog, plan_step

_register()
runner = CliRunner()

# Importing CrewAI emits an ImportWarning about its own package layout (crewai.rag).
pytestmark = [pytest.mark.procs, pytest.mark.filterwarnings("ignore::ImportWarning")]


def planner_yaml(planner_id: str, *replies: object) -> str:
    texts = [r if isinstance(r, str) else json.dumps(r) for r in replies]
    return (
        f"id: {planner_id}\ntype: scripted\nrole: Planner\ngoal: Plan\nbackstory: Plans.\n"
        f"script:\n  replies: {json.dumps(texts)}\n"
    )


VALID = {"steps": [plan_step("one"), plan_step("two", "beta")]}
PLANNERS = {
    "agent_providers/fixer.yaml": planner_yaml(
        "fixer", {"steps": [plan_step("one", "gamma")]}, VALID
    ),
    "agent_providers/stubborn.yaml": planner_yaml("stubborn", "I think we should research."),
    "agent_providers/stepper.yaml": planner_yaml(
        "stepper",
        {"steps": [plan_step("gather")]},
        {"steps": [plan_step("analyse", "beta", depends_on=["gather"])]},
        {"done": True, "final_answer": "Gardens need water."},
        {"steps": [plan_step("never")]},
    ),
    "agent_providers/chat.yaml": planner_yaml("chat", {"steps": [plan_step("answer")]}),
    "agent_providers/router.yaml": planner_yaml(
        "router", {"workflow": "hidden"}, {"workflow": "briefing"}
    ),
    "agent_providers/toolsmith.yaml": planner_yaml(
        "toolsmith",
        {"steps": [plan_step("count", "counter", tools=["words"])]},
        {"steps": [plan_step("count", "counter", tools=["word_count"])]},
    ),
    "agent_providers/counter.yaml": """\
        id: counter
        type: scripted
        role: Counter
        goal: Count words
        backstory: Counts with a tool.
        script:
          replies:
            - {tool: word_count, args: {text: "tide pools are full of life"}}
            - "The text has {tool_result} words."
    """,
    "tools/word_count.yaml": """\
        id: word_count
        description: Count the words of a text.
        python: agentic.tools.demo_python:word_count
    """,
    "workflows/briefing.yaml": """\
        meta: {id: briefing, summary: A two-step brief on a subject., good_for: [briefs]}
        workflow:
          name: briefing
          topic: placeholder
          agent_providers: [alpha, beta]
          tasks:
            - id: gather
              agent_provider_id: alpha
              description: Gather {topic}
              expected_output: notes
            - id: brief
              agent_provider_id: beta
              description: Brief {topic}
              expected_output: text
    """,
    "workflows/hidden.yaml": """\
        meta: {summary: Not for goals., router_include: false}
        workflow:
          name: hidden
          agent_providers: [alpha]
          tasks: [{id: only, agent_provider_id: alpha, description: d, expected_output: e}]
    """,
    "workflows/needs_input.yaml": """\
        meta: {summary: Needs an audience input.}
        workflow:
          name: needs_input
          agent_providers: [alpha]
          tasks:
            - id: only
              agent_provider_id: alpha
              description: For {audience}
              expected_output: e
    """,
}


@pytest.fixture
def env(tmp_path, monkeypatch) -> Settings:
    config = make_catalog(tmp_path / "config", dict(PLANNERS))
    store = tmp_path / "store"
    monkeypatch.setenv("AGENTIC_CONFIG_DIR", str(config))
    monkeypatch.setenv("AGENTIC_RUN_STORE_URL", str(store))
    monkeypatch.setenv("AGENTIC_EXECUTION_BACKEND", "inprocess")
    return Settings(config_dir=str(config), run_store_url=str(store))


@contextlib.contextmanager
def llm_calls() -> Iterator[list[Any]]:
    """Every model call made in this process inside the block (CrewAI's own events)."""
    from crewai.events import crewai_event_bus
    from crewai.events.types.llm_events import LLMCallStartedEvent

    calls: list[Any] = []
    with crewai_event_bus.scoped_handlers():

        @crewai_event_bus.on(LLMCallStartedEvent)
        def _count(source: object, event: LLMCallStartedEvent) -> None:
            calls.append(event)

        yield calls
        crewai_event_bus.flush()


def planner_calls(calls: list[Any], planner: str) -> list[Any]:
    return [c for c in calls if c.model == f"scripted/{planner}"]


def plan_run(settings: Settings, goal: str, planner: str, **options: object):
    request = RunRequest(
        goal=goal,
        planner=PlannerOptions(**options) if options else None,  # type: ignore[arg-type]
    )
    settings = settings.model_copy(update={"planner_agent_provider": planner})
    return run_to_completion(request, settings, lambda event: None)


def test_a_goal_is_planned_into_a_three_step_workflow_and_run(tmp_path):
    # A real `agentic` process: the example catalog's research step starts a stdio MCP
    # server, which needs real standard streams (CliRunner's have no file descriptors).
    store = tmp_path / "store"
    env = {
        **os.environ,
        "AGENTIC_RUN_STORE_URL": str(store),
        "AGENTIC_CONFIG_DIR": str(EXAMPLE_CONFIG),
        "AGENTIC_EXECUTION_BACKEND": "inprocess",
    }
    goal = 'Explain "durable" workflows'

    done = subprocess.run(
        [sys.executable, "-m", "agentic", "run", "--goal", goal, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    shown = json.loads(done.stdout)
    assert shown["status"] == "succeeded"
    assert [s["step_id"] for s in shown["steps"]] == ["research", "write", "edit"]
    record = open_store(str(store)).read_run(shown["run_id"])
    assert record.workflow is not None and record.workflow.name == "plan-explain-durable-workflows"
    assert record.workflow.task("research").mcp_providers == ["demo_tools"]
    assert [r["problems"] for r in record.plan["replies"]] == [[]]  # one call, accepted
    assert [s["id"] for s in record.plan["plan"]["steps"]] == ["research", "write", "edit"]
    assert goal in record.workflow.task("research").description
    research = open_store(str(store)).read_result(record.run_id, "research")
    assert research is not None and "From lookup_fact:" in research.output


def test_an_invalid_plan_is_repaired_once(env):
    with llm_calls() as calls:
        record = plan_run(env, "Write about kites", "fixer")

    assert record.status == "succeeded", record.error
    assert record.workflow is not None and record.workflow.task_sequence == ["one", "two"]
    first, second = record.plan["replies"]
    [problem] = first["problems"]
    assert problem.startswith("step 'one': unknown agent 'gamma' (offered: alpha, beta, ")
    assert "fixer" not in problem  # the planner is never offered as a step's agent
    assert second["problems"] == []
    asked = planner_calls(calls, "fixer")
    assert len(asked) == 2
    repair_request = asked[1].messages[-1]["content"]
    assert "unknown agent 'gamma'" in repair_request
    assert asked[1].messages[-2] == {"role": "assistant", "content": first["raw"]}


def test_a_plan_that_stays_invalid_fails_the_run_with_the_raw_output_saved(env):
    result = runner.invoke(
        app,
        ["run", "--goal", "Write about kites", "--json"],
        env={"AGENTIC_PLANNER_AGENT_PROVIDER": "stubborn"},
    )

    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    shown = json.loads(result.stdout)
    assert shown["status"] == "failed"
    record = open_store(env.run_store_url).read_run(shown["run_id"])
    assert record.status == "failed" and record.workflow is None
    assert record.error.startswith("planning failed: the planner's reply is not a usable plan")
    assert f"agentic show {record.run_id} --json" in record.error
    raws = [r["raw"] for r in record.plan["replies"]]
    assert len(raws) == 2
    assert all("I think we should research." in raw for raw in raws)
    assert "not valid JSON" in record.plan["replies"][1]["problems"][0]


def test_an_iterative_run_stops_when_the_planner_says_the_goal_is_met(env):
    with llm_calls() as calls:
        record = plan_run(env, "Plan a garden", "stepper", iterative=True, max_rounds=5)

    assert record.status == "succeeded", record.error
    assert [r["step"] for r in record.plan["rounds"][:2]] == ["gather", "analyse"]
    assert len(record.plan["rounds"]) == 3  # the third round's reply was "done"
    assert record.plan["stopped"] == "done"
    assert record.plan["final_answer"] == "Gardens need water."
    assert len(planner_calls(calls, "stepper")) == 3  # never asked a fourth time
    steps = [c.task_name for c in calls if c.task_name]
    assert steps == ["gather", "analyse", "synthesis"]  # each step ran once, "never" never
    assert record.workflow is not None
    assert record.workflow.task_sequence == ["gather", "analyse", "synthesis"]
    synthesis = record.workflow.task("synthesis")
    assert synthesis.depends_on == ["gather", "analyse"]
    assert "Gardens need water." in synthesis.description
    store = open_store(env.run_store_url)
    rounds = [store.read_run(r["run_id"]) for r in record.plan["rounds"][:2]]
    assert [r.labels["agentic.round"] for r in rounds] == ["1", "2"]
    assert rounds[1].replay_of == rounds[0].run_id
    assert store.read_result(record.run_id, "gather").reused_from == rounds[0].run_id
    assert record.output == store.read_result(record.run_id, "synthesis").output


@pytest.mark.nats
def test_an_iterative_run_executes_its_rounds_on_the_nats_backend(env, monkeypatch):
    monkeypatch.delenv("AGENTIC_NATS_URL", raising=False)  # the command embeds its own stack
    monkeypatch.setenv("AGENTIC_PLANNER_AGENT_PROVIDER", "stepper")

    result = runner.invoke(
        app, ["run", "--goal", "Plan a garden", "--iterative", "--backend", "nats", "--json"]
    )

    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert (shown["backend"], shown["status"]) == ("nats", "succeeded")
    store = open_store(env.run_store_url)
    record = store.read_run(shown["run_id"])
    rounds = [store.read_run(r["run_id"]) for r in record.plan["rounds"][:2]]
    assert [r.backend for r in rounds] == ["nats", "nats"]
    # Each round executed only its new step; the final run only the synthesis.
    assert [s for s in ("gather", "analyse") if store.read_attempts(rounds[1].run_id, s)] == [
        "analyse"
    ]
    ran = [s for s in record.workflow.task_sequence if store.read_attempts(record.run_id, s)]
    assert ran == ["synthesis"]


def test_an_iterative_run_whose_plan_stays_invalid_fails_with_the_replies_kept(env):
    record = plan_run(env, "Plan a garden", "stubborn", iterative=True)

    assert record.status == "failed"
    assert record.error.startswith("round 1: the planner's reply is not a usable plan")
    assert record.plan["stopped"] == "invalid_plan"
    [first_round] = record.plan["rounds"]
    assert len(first_round["replies"]) == 2
    assert "I think we should research." in first_round["replies"][1]["raw"]
    assert open_store(env.run_store_url).read_run(record.run_id).status == "failed"


def test_an_iterative_run_ends_after_max_rounds_with_a_synthesis(env):
    record = plan_run(env, "Plan a garden", "stepper", iterative=True, max_rounds=1)

    assert record.status == "succeeded", record.error
    assert record.plan["stopped"] == "max_rounds"
    assert record.workflow is not None and record.workflow.task_sequence == ["gather", "synthesis"]


def test_a_sessions_second_goal_sees_the_first_goals_answer(env):
    first = plan_run(env, "Name a fruit", "chat", session="fruit-talk")
    assert first.status == "succeeded"
    assert first.output == "done with Name a fruit"

    with llm_calls() as calls:
        second = plan_run(env, "Now name a vegetable", "chat", session="fruit-talk")

    assert second.status == "succeeded"
    [asked] = planner_calls(calls, "chat")
    prompt = asked.messages[-1]["content"]
    assert "1. Goal: Name a fruit" in prompt
    assert "Final answer: done with Name a fruit" in prompt
    assert prompt == second.plan["prompt"]
    session = read_session(open_store(env.run_store_url), "fruit-talk")
    assert [(e.run_id, e.final_answer) for e in session.entries] == [
        (first.run_id, "done with Name a fruit"),
        (second.run_id, "done with Now name a vegetable"),
    ]


def test_an_iterative_session_records_its_answer_for_the_next_goal(env):
    first = plan_run(env, "Plan a garden", "stepper", iterative=True, session="garden")

    second = plan_run(env, "Water it", "chat", session="garden")

    assert first.output and first.output in second.plan["prompt"]


def test_goal_options_without_a_goal_are_refused(env):
    result = runner.invoke(app, ["run", "flow", "--iterative"])

    assert result.exit_code == 2
    assert "give --goal TEXT" in result.stderr


def test_a_goal_runs_a_catalog_workflow_its_meta_offers(env):
    with llm_calls() as calls:
        record = plan_run(env, "Tide pools", "router")

    assert record.status == "succeeded", record.error
    assert record.workflow is not None and record.workflow.name == "briefing"
    assert record.workflow.topic == "Tide pools"  # the goal is the topic
    assert record.workflow.task_sequence == ["gather", "brief"]
    first, second = record.plan["replies"]
    assert first["problems"] == ["unknown catalog workflow 'hidden' (offered: briefing)"]
    assert second["problems"] == [] and record.plan["plan"]["workflow"] == "briefing"
    prompt = planner_calls(calls, "router")[0].messages[-1]["content"]
    assert (
        "- briefing: A two-step brief on a subject. Good for: briefs Steps: gather -> brief."
    ) in prompt
    assert "- hidden:" not in prompt  # router_include: false
    assert "- needs_input:" not in prompt  # {audience} is not an input of the run
    assert "- flow:" not in prompt  # no meta
    outputs = open_store(env.run_store_url).read_result(record.run_id, "brief")
    assert outputs is not None and outputs.status == "succeeded"


def test_a_plan_step_gets_the_python_tools_it_names(env):
    with llm_calls() as calls:
        record = plan_run(env, "Count words", "toolsmith")

    assert record.status == "succeeded", record.error
    first, _ = record.plan["replies"]
    assert first["problems"] == ["step 'count': unknown Python tool 'words' (offered: word_count)"]
    assert record.workflow is not None and record.workflow.task("count").tools == ["word_count"]
    prompt = planner_calls(calls, "toolsmith")[0].messages[-1]["content"]
    assert "Python tools a step may list in tools (a step gets none else):\n- word_count: " in (
        prompt
    )
    result = open_store(env.run_store_url).read_result(record.run_id, "count")
    assert result is not None and result.output == "The text has 6 words."
