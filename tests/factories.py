"""Builders of test data, one definition each; every test module imports them from here.

Two kinds of data:

* **Catalog files**, YAML text written under a temporary directory (:func:`make_catalog`,
  :func:`workflow_yaml`, :func:`task_yaml`, …) for catalog, materializer and CLI tests. Their
  agents are ``alpha`` and ``beta``, so :func:`plan_step` refers to ``alpha`` by default.
* **Contract objects** built in memory: agents (:func:`scripted_agent`), tasks and workflows
  (:func:`task`, :func:`workflow`, :func:`one_step`, :func:`two_steps`), step specs
  (:func:`step_spec`, :func:`bus_spec`), run requests (:func:`inline_request`), and what a
  store holds (:func:`run_record`, :func:`step_result`). Their default agent is ``scripted``.

Arguments name what a test is about and every other field has a default, so a test shows the
values its assertions read. A module whose tests share values binds them once with
``functools.partial``. Scripted agents share one persona (role, goal, backstory): it reaches
CrewAI's prompt, which the scripted LLM never reads; their replies are what tests observe.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agentic.catalog import Problem, validate_path
from agentic.contracts import (
    AgentProvider,
    RunRecord,
    RunRequest,
    StepResult,
    StepSpec,
    TaskConfig,
    Timing,
    WorkflowConfig,
)

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIG = REPO / "config"
ORIGIN_CATALOG = REPO / "tests" / "fixtures" / "origin_catalogs"
"""Catalogs written in the original tool's format (docs/compatibility.md)."""
GATING_VARIABLES = ("OPENAI_API_KEY", "OLLAMA_HOST", "DEMO_MCP_URL")
"""Variables that switch parts of the example catalog on: unset for predictable validation."""

# --- catalog files -----------------------------------------------------------------------

SCRIPTED_AGENT = """\
id: {id}
type: scripted
role: Tester
goal: Test {{topic}}
backstory: Writes tests.
script:
  replies: ["done with {{topic}}"]
"""

BASE_FILES: dict[str, str] = {
    "agent_providers/alpha.yaml": SCRIPTED_AGENT.format(id="alpha"),
    "agent_providers/beta.yaml": SCRIPTED_AGENT.format(id="beta"),
    "mcp_providers/tools.yaml": """\
        id: tools
        stdio: {command: python, args: ["-m", "agentic.tools.demo_mcp"]}
    """,
    "workflows/flow.yaml": """\
        workflow:
          name: flow
          topic: testing
          agent_providers: [alpha, beta]
          mcp_providers: [tools]
          tasks:
            - id: one
              agent_provider_id: alpha
              description: Study {topic}
              expected_output: notes
            - {id: two, agent_provider_id: beta, description: Write, expected_output: text}
          task_sequence: [one, two]
    """,
}


def write_files(root: Path, files: Mapping[str, str | None]) -> Path:
    """Write ``files`` (relative path -> text, ``None`` deletes) under ``root``."""
    for rel, text in files.items():
        path = root / rel
        if text is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def make_catalog(root: Path, files: Mapping[str, str | None] | None = None) -> Path:
    """A valid small catalog under ``root``, with ``files`` added, replaced or deleted."""
    write_files(root, BASE_FILES)
    return write_files(root, files or {})


def workflow_yaml(tasks: str, *, extra: str = "", agents: str = "[alpha, beta]") -> str:
    """A workflow file named ``flow`` with the given YAML task list (already indented 4)."""
    return (
        "workflow:\n"
        "  name: flow\n"
        "  topic: testing\n"
        f"  agent_providers: {agents}\n"
        "  mcp_providers: [tools]\n"
        "  tasks:\n"
        f"{textwrap.indent(textwrap.dedent(tasks), '    ')}"
        f"{extra}"
    )


def task_yaml(task_id: str, agent: str = "alpha", **fields: str) -> str:
    """One task as a YAML flow-mapping list item; ``fields`` values are YAML text."""
    extra = "".join(f", {name}: {value}" for name, value in fields.items())
    body = f"id: {task_id}, agent_provider_id: {agent}, description: d, expected_output: e"
    return f"- {{{body}{extra}}}\n"


def inline_agent_yaml(agent_id: str, script: str = "{replies: [hi]}") -> str:
    """An inline scripted agent provider in YAML flow style."""
    return f"{{id: {agent_id}, type: scripted, role: r, goal: g, backstory: b, script: {script}}}"


def alias_bomb(levels: int = 10, width: int = 10, *, flow: bool = False) -> str:
    """A "billion laughs" document: each anchored list holds ``width`` aliases of the previous.

    About 400 bytes that expand to ``width ** levels`` strings. Block style is a mapping of
    one list per line (level ``n`` on line ``n + 1``); flow style is one line, for ``--set``.
    """
    lists = ["&l0 [" + ", ".join(["lol"] * width) + "]"]
    lists += [f"&l{n} [" + ", ".join([f"*l{n - 1}"] * width) + "]" for n in range(1, levels)]
    if flow:
        return "[" + ", ".join(lists) + "]"
    return "".join(f"k{n}: {body}\n" for n, body in enumerate(lists))


def problems_of(root: Path) -> list[Problem]:
    """Every problem ``agentic validate`` would print for ``root``."""
    return validate_path(root)


def only_problem(root: Path) -> Problem:
    """The one problem of ``root`` (fails when there are none or several)."""
    problems = problems_of(root)
    assert len(problems) == 1, problems
    return problems[0]


# --- agents --------------------------------------------------------------------------------

HELLO = "{step_id} says hello to {topic}"
"""The default scripted reply: ``only says hello to backends`` for step ``only``."""
DONE = "{step_id} done for {topic}"
"""The reply of the NATS stack tests' agents (and of their catalogs' YAML)."""
PERSONA: dict[str, str] = {"role": "Tester", "goal": "Test {topic}", "backstory": "Tests backends."}


def agent_data(provider_id: str = "scripted", **fields: Any) -> dict[str, Any]:
    """An agent provider entry as JSON data: scripted, unless ``fields`` set ``type``."""
    return {"id": provider_id, "type": "scripted", **PERSONA, **fields}


def agent(provider_id: str = "scripted", **fields: Any) -> AgentProvider:
    """:func:`agent_data` as a model (``agent("a", type="openai", model="gpt-4o-mini")``)."""
    return AgentProvider.model_validate(agent_data(provider_id, **fields))


def scripted_agent_data(
    provider_id: str = "scripted", replies: Sequence[Any] = (HELLO,), **script: Any
) -> dict[str, Any]:
    """A scripted agent provider as JSON data, for inline workflows sent as requests.

    Args:
        provider_id: The provider's id.
        replies: Its replies in order: templates (``{step_id}``, ``{topic}``, ``{task}``,
            ``{tool_result}``, input names) or tool-call mappings.
        **script: The rest of its script: ``delay_s``, ``fail``.
    """
    return agent_data(provider_id, script={"replies": list(replies), **script})


def scripted_agent(
    provider_id: str = "scripted", replies: Sequence[Any] = (HELLO,), **script: Any
) -> AgentProvider:
    """:func:`scripted_agent_data` as a model."""
    return AgentProvider.model_validate(scripted_agent_data(provider_id, replies, **script))


# --- tasks and workflows ---------------------------------------------------------------------


def task_data(
    step_id: str,
    agent: str = "scripted",
    *,
    description: str = "do {step_id}",
    expected_output: str = "text",
    **fields: Any,
) -> dict[str, Any]:
    """A task entry as JSON data; ``{step_id}`` in its texts becomes ``step_id``.

    Other placeholders (``{topic}``) are left for the run to fill.
    """
    return {
        "id": step_id,
        "agent_provider_id": agent,
        "description": description.replace("{step_id}", step_id),
        "expected_output": expected_output.replace("{step_id}", step_id),
        **fields,
    }


def task(step_id: str, agent: str = "scripted", **fields: Any) -> TaskConfig:
    """:func:`task_data` as a model."""
    return TaskConfig.model_validate(task_data(step_id, agent, **fields))


def plan_step(step_id: str, agent: str = "alpha", **fields: Any) -> dict[str, Any]:
    """One step of a planner's plan (JSON data), by default for the catalog's ``alpha``."""
    return task_data(step_id, agent, **fields)


def workflow(
    *tasks: TaskConfig,
    name: str = "wf",
    topic: str = "",
    agents: Sequence[AgentProvider] | None = None,
    sequence: Sequence[str] | None = None,
) -> WorkflowConfig:
    """A workflow of ``tasks`` run in the given order (or ``sequence``).

    ``agents`` defaults to one scripted agent (:func:`scripted_agent`) per agent id the
    tasks name.
    """
    if agents is None:
        agents = [scripted_agent(i) for i in dict.fromkeys(t.agent_provider_id for t in tasks)]
    return WorkflowConfig(
        name=name,
        topic=topic,
        agent_providers=list(agents),
        tasks=list(tasks),
        task_sequence=list(sequence or [t.id for t in tasks]),
    )


def one_step(
    agent: AgentProvider | None = None,
    *,
    name: str = "one",
    topic: str = "backends",
    **task_fields: Any,
) -> WorkflowConfig:
    """A single step ``only`` run by ``agent`` (a :func:`scripted_agent` by default)."""
    agent = agent or scripted_agent()
    only = task(
        "only",
        agent.id,
        description="Say hello to {topic}.",
        expected_output="A greeting.",
        **task_fields,
    )
    return workflow(only, name=name, topic=topic, agents=[agent])


def two_steps(
    agent: AgentProvider | None = None, *, name: str = "two-steps", topic: str = "backends"
) -> WorkflowConfig:
    """``research`` then ``write``, which sees research's output."""
    agent = agent or scripted_agent()
    research = task("research", agent.id, description="Research {topic}.", expected_output="Notes.")
    write = task(
        "write", agent.id, description="Write about {topic}.", expected_output="A paragraph."
    )
    return workflow(research, write, name=name, topic=topic, agents=[agent])


def inline_request(
    run_id: str,
    steps: Sequence[str],
    provider: Mapping[str, Any],
    *,
    topic: str = "guarantees",
    **task_fields: Any,
) -> dict[str, Any]:
    """A RunRequest (as JSON data) of a sequential inline workflow; every step uses ``provider``."""
    tasks = [
        task_data(
            step,
            provider["id"],
            description="Do {step_id} about {topic}.",
            expected_output="One line.",
            **task_fields,
        )
        for step in steps
    ]
    workflow = {"name": "guarantees", "agent_providers": [dict(provider)], "tasks": tasks}
    return {"run_id": run_id, "inputs": {"topic": topic}, "workflow": {"workflow": workflow}}


# --- step specs ----------------------------------------------------------------------------

WRITER: dict[str, Any] = {"id": "writer", "type": "scripted"}
"""The agent provider entry of :func:`step_spec` (a spec carries the resolved entry)."""
OPENAI_WRITER: dict[str, Any] = agent_data("writer", type="openai", required_env=["OPENAI_API_KEY"])
"""A provider entry that needs a secret: what Kubernetes manifests are tested with."""


def step_spec(
    *,
    agent_provider: Mapping[str, Any] = WRITER,
    provider: Mapping[str, Any] | None = None,
    **fields: Any,
) -> StepSpec:
    """A StepSpec: step ``research`` (index 0, attempt 1) of run ``run-1`` of ``demo``.

    Args:
        agent_provider: The provider entry.
        provider: Fields merged over ``agent_provider`` (``provider={"min_vram_gb": 24}``).
        **fields: Any other StepSpec field.
    """
    values: dict[str, Any] = {
        "run_id": "run-1",
        "step_id": "research",
        "step_index": 0,
        "attempt": 1,
        "workflow_name": "demo",
        "topic": "agents",
        "task": {"description": "d", "expected_output": "e"},
        "agent_provider": {**agent_provider, **(provider or {})},
        "store_url": "memory://store",
        **fields,
    }
    return StepSpec.model_validate(values)


def bus_spec(pool: str, *, step_id: str = "research", attempt: int = 1, text: str = "") -> StepSpec:
    """A small StepSpec for bus tests; its run id is derived from the pool.

    ``Nats-Msg-Id`` dedup spans the whole steps stream, so tests that each use their own
    pool also need their own run ids. ``text`` pads the description (size limits).
    """
    return step_spec(
        run_id=f"run-{pool}",
        step_id=step_id,
        attempt=attempt,
        topic="durable agents",
        task={"description": f"Research the topic. {text}", "expected_output": "notes"},
        pool=pool,
    )


# --- what a store holds --------------------------------------------------------------------

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
"""When stored things happened; with microseconds, which a store must keep."""


def run_record(run_id: str = "run-1", created_at: datetime = T0, **changes: Any) -> RunRecord:
    """A pending ``demo`` run on ``inprocess`` created (and updated) at ``created_at``.

    ``changes`` replace fields as they are, without validation (``status="succeeded"``).
    """
    record = RunRecord(
        run_id=run_id,
        request=RunRequest(workflow_ref="demo", run_id=run_id),
        backend="inprocess",
        inputs={"topic": "otters"},
        created_at=created_at,
        updated_at=created_at,
    )
    return record.model_copy(update=changes)


def step_result(
    run_id: str = "run-1", step_id: str = "research", attempt: int = 1, output: str = "done"
) -> StepResult:
    """A succeeded attempt that took 1.5 s from :data:`T0`."""
    return StepResult(
        run_id=run_id,
        step_id=step_id,
        attempt=attempt,
        status="succeeded",
        output=output,
        timing=Timing(started_at=T0, finished_at=T0 + timedelta(seconds=1.5)),
    )
