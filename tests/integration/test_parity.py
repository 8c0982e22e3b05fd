"""One workflow, three backends, one behaviour (issue "Run lifecycle at scale", "One
behaviour per YAML"): ``agentic run`` of the same workflow with the same input on
``inprocess`` (one CrewAI crew), ``subprocess`` (a process per step) and ``nats`` (the
embedded stack: a coordinator and a worker) substitutes the input alike, sends the model
the same prompts (the scripted provider counts their words: the same tokens per step), and
its live log gives each step the duration ``agentic show`` gives it.

The scripted agent answers with ``{task}``, the description it received, so an output shows
what the prompt said. Its goal uses the input too: CrewAI's kickoff fills an agent's texts
on ``inprocess``, and the step runtime must fill them alike.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentic.cli import _register, app
from agentic.cli.progress import format_duration
from agentic.store import open_store
from tests.factories import make_catalog

_register()
runner = CliRunner()

pytestmark = [
    pytest.mark.procs,
    pytest.mark.nats,
    pytest.mark.filterwarnings("ignore::ImportWarning"),  # CrewAI's package layout
]

BACKENDS = ("inprocess", "subprocess", "nats")
CATALOG = {
    "agent_providers/scout.yaml": """\
        id: scout
        type: scripted
        role: Analyst
        goal: Tell {audience} what matters about {topic}
        backstory: Briefs people who decide.
        script:
          replies: ["{step_id} for {audience}: {task}"]
          delay_s: 0.05
    """,
    "workflows/brief.yaml": """\
        workflow:
          name: brief
          topic: tide pools
          agent_providers: [scout]
          tasks:
            - {id: gather, agent_provider_id: scout, description: "Gather facts on {topic}.",
               expected_output: "Notes for {audience}."}
            - {id: draft, agent_provider_id: scout, description: "Draft a brief for {audience}.",
               expected_output: A brief.}
            - {id: polish, agent_provider_id: scout, description: "Polish the brief.",
               expected_output: "The brief {audience} reads."}
          task_sequence: [gather, draft, polish]
    """,
}  # fmt: skip
LIVE_END = re.compile(r"^\S+ (\w+) succeeded \(attempt 1\) in (\S+)$", re.MULTILINE)
"""A step's end in the live log (plain lines: the CLI's output is not a terminal here)."""


@pytest.fixture
def catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGENTIC_CONFIG_DIR", str(make_catalog(tmp_path / "config", CATALOG)))
    monkeypatch.setenv("AGENTIC_RUN_STORE_URL", str(tmp_path / "store"))
    monkeypatch.delenv("AGENTIC_NATS_URL", raising=False)  # nats: the run embeds its stack
    return tmp_path / "store"


def run_on(backend: str) -> tuple[dict[str, str], dict[str, Any]]:
    """``agentic run brief`` on ``backend``: each step's duration in the live log, and what
    ``agentic show --json`` says of the run."""
    run_id = f"parity-{backend}"
    ran = runner.invoke(
        app,
        ["run", "brief", "--backend", backend, "--input", "audience=investors", "--run-id", run_id],
    )
    assert ran.exit_code == 0, ran.output
    shown = runner.invoke(app, ["show", run_id, "--json"])
    assert shown.exit_code == 0, shown.output
    return dict(LIVE_END.findall(ran.stdout)), json.loads(shown.stdout)


def test_inputs_tokens_and_durations_are_the_same_on_inprocess_subprocess_and_nats(
    catalog: Path,
) -> None:
    runs = {backend: run_on(backend) for backend in BACKENDS}

    tokens: dict[str, dict[str, tuple[int, int]]] = {}
    outputs: dict[str, dict[str, str]] = {}
    for backend, (live, shown) in runs.items():
        steps = {step["step_id"]: step for step in shown["steps"]}
        assert (shown["backend"], shown["inputs"]) == (backend, {"audience": "investors"})
        assert list(steps) == ["gather", "draft", "polish"]
        assert {step["status"] for step in steps.values()} == {"succeeded"}
        tokens[backend] = {
            sid: (step["usage"]["prompt_tokens"], step["usage"]["completion_tokens"])
            for sid, step in steps.items()
        }
        outputs[backend] = {sid: step["output"] for sid, step in steps.items()}
        # The live log ends each step with the duration its result records, as `show` does.
        assert live == {sid: format_duration(step["duration_s"]) for sid, step in steps.items()}
        store = open_store(str(catalog))
        for sid in steps:
            spec = store.read_spec(shown["run_id"], sid)
            assert "investors" in spec.task.description + spec.task.expected_output
            assert "{audience}" not in spec.task.description + spec.task.expected_output

    assert outputs["inprocess"]["draft"] == "draft for investors: Draft a brief for investors."
    assert all(prompt > 0 and completion > 0 for prompt, completion in tokens["nats"].values())
    # The same prompts, counted alike: step by step, prompt and completion tokens agree.
    assert tokens["subprocess"] == tokens["inprocess"]
    assert tokens["nats"] == tokens["inprocess"]
    assert outputs["subprocess"] == outputs["nats"] == outputs["inprocess"]
