"""A hierarchical crew (``process: hierarchical``) runs as CrewAI's hierarchical process, as
one step, on ``inprocess`` and on ``nats`` (the embedded stack: a real nats-server, a
coordinator and a worker), with the same output and tokens.

The manager and its coworkers are scripted: the manager calls CrewAI's delegation tool
(``delegate_work_to_coworker``) and answers with what the coworker returned, so the final
output holds words only a coworker writes: delegation happened. The first task is assigned
to the researcher; the manager may give the second to anyone and gives it to the writer,
whose answer ends the crew. In a crew of its own, a coworker calls a tool of its MCP
provider when work is delegated to it.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentic.catalog import load_catalog, load_workflow
from agentic.cli import _register, app
from agentic.materialize import materialize
from agentic.settings import Settings
from agentic.store import open_store
from tests.factories import make_catalog

with warnings.catch_warnings():
    # Importing CrewAI emits an ImportWarning about its own package layout (crewai.rag).
    warnings.simplefilter("ignore", ImportWarning)
    from agentic.runtime import execute_step

_register()
runner = CliRunner()

pytestmark = [
    pytest.mark.procs,
    pytest.mark.nats,
    pytest.mark.filterwarnings("ignore::ImportWarning"),  # CrewAI's package layout
]

CATALOG = {
    "agent_providers/lead.yaml": """\
        id: lead
        type: scripted
        role: Editor in chief
        goal: Get the best brief on {topic}
        backstory: Runs a newsroom and never writes herself.
        script:
          replies:
            - tool: delegate_work_to_coworker
              args: {task: "Find one fact about {topic}", context: "For a brief",
                     coworker: Researcher}
            - "Notes: {tool_result}"
            - tool: delegate_work_to_coworker
              args: {task: "Write the brief on {topic}", context: "From the notes",
                     coworker: Writer}
            - "Brief: {tool_result}"
    """,
    "agent_providers/scout.yaml": """\
        id: scout
        type: scripted
        role: Researcher
        goal: Find facts about {topic}
        backstory: Digs deep.
        script: {replies: ["SCOUT-FACT on {topic}"]}
    """,
    "agent_providers/pen.yaml": """\
        id: pen
        type: scripted
        role: Writer
        goal: Write about {topic}
        backstory: Writes clearly.
        script: {replies: ["PEN-DRAFT on {topic}"]}
    """,
    # A coworker with an MCP provider, in a crew of its own.
    "agent_providers/chief.yaml": """\
        id: chief
        type: scripted
        role: Chief
        goal: Know how long {topic} is
        backstory: Counts on others.
        script:
          replies:
            - tool: delegate_work_to_coworker
              args: {task: "Count the words of {topic}", context: "-", coworker: Counter}
            - "Count: {tool_result}"
    """,
    "agent_providers/counter.yaml": """\
        id: counter
        type: scripted
        role: Counter
        goal: Count words
        backstory: Precise.
        script:
          replies:
            - {tool: word_count, args: {text: "{topic}"}}
            - "COUNTED {tool_result}"
    """,
    "mcp_providers/demo_tools.yaml": """\
        id: demo_tools
        stdio: {command: python, args: ["-m", "agentic.tools.demo_mcp"]}
    """,
    "workflows/tally.yaml": """\
        workflow:
          name: tally
          topic: tide pools
          process: hierarchical
          manager_provider: chief
          agent_providers: [chief, counter]
          mcp_providers: [demo_tools]
          tasks:
            - {id: count, agent_provider_id: chief, description: "Count {topic}.",
               expected_output: A number.}
    """,
    "workflows/newsroom.yaml": """\
        workflow:
          name: newsroom
          topic: tide pools
          process: hierarchical
          manager_provider: lead
          agent_providers: [lead, scout, pen]
          tasks:
            - {id: research, agent_provider_id: scout, description: "Research {topic}.",
               expected_output: Notes.}
            - {id: write, agent_provider_id: lead, description: "Write a brief on {topic}.",
               expected_output: A brief.}
          task_sequence: [research, write]
    """,
}  # fmt: skip


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AGENTIC_CONFIG_DIR", str(make_catalog(tmp_path / "config", CATALOG)))
    monkeypatch.setenv("AGENTIC_RUN_STORE_URL", str(tmp_path / "store"))
    monkeypatch.delenv("AGENTIC_NATS_URL", raising=False)  # nats: the run embeds its stack
    return str(tmp_path / "store")


def run_on(backend: str) -> dict[str, Any]:
    """``agentic run newsroom`` on ``backend``; what ``agentic show --json`` says of it."""
    run_id = f"crew-{backend}"
    ran = runner.invoke(app, ["run", "newsroom", "--backend", backend, "--run-id", run_id])
    assert ran.exit_code == 0, ran.output
    shown = runner.invoke(app, ["show", run_id, "--json"])
    assert shown.exit_code == 0, shown.output
    return dict(json.loads(shown.stdout))


def test_a_hierarchical_crew_delegates_as_one_step_on_inprocess_and_nats(store_url: str) -> None:
    runs = {backend: run_on(backend) for backend in ("inprocess", "nats")}

    for backend, shown in runs.items():
        (step,) = shown["steps"]
        assert (step["step_id"], step["status"]) == ("crew", "succeeded")
        # Only the writer writes PEN-DRAFT: the manager delegated the task to it.
        assert step["output"] == "Brief: PEN-DRAFT on tide pools", backend
        spec = open_store(store_url).read_spec(shown["run_id"], "crew")
        assert spec.crew is not None
        assert [m.agent_provider["id"] for m in spec.crew.coworkers] == ["scout", "pen"]
    usage = {backend: shown["steps"][0]["usage"] for backend, shown in runs.items()}
    assert usage["nats"] == usage["inprocess"]
    assert usage["inprocess"]["prompt_tokens"] > 0


def test_a_coworker_calls_the_tools_of_its_mcp_provider_when_work_is_delegated(
    store_url: str,
) -> None:
    catalog = load_catalog([Path(os.environ["AGENTIC_CONFIG_DIR"])])
    wf = load_workflow("tally", catalog)
    (spec,) = materialize(wf, run_id="tally-1", inputs={}, store_url=store_url, settings=Settings())
    result = execute_step(spec)
    assert result.status == "succeeded", result.error
    assert result.output == "Count: COUNTED 2"  # "tide pools", counted by the MCP server
