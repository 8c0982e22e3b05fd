"""Structured output through the real CrewAI runtime with the scripted provider: a task's
output_schema on the in-process crew and on the per-step runtime (docs/runtime.md,
"Structured output").

The fixture workflow (:mod:`tests.fixtures.structured_output`) is the one to reuse on other
backends: it says what every backend must store.
"""

from __future__ import annotations

import json
import uuid
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from agentic.catalog import load_catalog, load_workflow
from agentic.contracts import StepResult, WorkflowConfig
from agentic.errors import RetryableStepFailure
from agentic.graph import context
from agentic.materialize import materialize, with_prior_steps
from agentic.settings import Settings
from agentic.store import open_store
from tests.factories import scripted_agent_data, step_spec, task, workflow
from tests.fixtures.structured_output import BRIEF, CATALOG, OUTPUTS, VERDICT, WORKFLOW

with warnings.catch_warnings():
    warnings.simplefilter("ignore", ImportWarning)  # CrewAI's own package layout
    from crewai.events import TaskStartedEvent, crewai_event_bus

    from agentic.runtime import execute_step, run_workflow_inprocess

pytestmark = pytest.mark.filterwarnings("ignore::ImportWarning")

SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "n": {"type": "integer"}},
    "required": ["title"],
}


def fixture_workflow() -> WorkflowConfig:
    """``structured_brief``: ``brief`` (JSON, right at the second try) then ``verdict``."""
    return load_workflow(WORKFLOW, load_catalog([CATALOG], env={}))


def contexts_seen(run: Any) -> dict[str, str]:
    """The context CrewAI gives each task (what the model reads) while ``run()`` runs."""
    seen: dict[str, str] = {}
    with crewai_event_bus.scoped_handlers():

        @crewai_event_bus.on(TaskStartedEvent)
        def _record(source: Any, event: TaskStartedEvent) -> None:
            seen[event.task.name] = event.context or ""

        run()
        crewai_event_bus.flush()
    return seen


def test_the_inprocess_crew_stores_each_answer_as_json_and_hands_it_on_as_json() -> None:
    results: list[StepResult] = []
    final: list[str] = []
    seen = contexts_seen(
        lambda: final.append(
            run_workflow_inprocess(
                fixture_workflow(), run_id="run-json", inputs={}, on_step=results.append
            )
        )
    )
    brief, verdict = results
    assert (brief.status, brief.output_json, brief.attempt) == ("succeeded", BRIEF, 1)
    assert [brief.output, verdict.output] == [OUTPUTS["brief"], OUTPUTS["verdict"]]
    # The first answer broke the schema: one more model call with feedback, same attempt.
    assert brief.usage.requests == 2
    assert verdict.output_json == VERDICT  # its answer came in a ```json fence
    assert seen["verdict"] == brief.output
    assert final == [json.dumps(VERDICT)]


def test_each_step_on_its_own_stores_the_same_json_and_the_next_reads_it_from_the_store() -> None:
    wf, settings = fixture_workflow(), Settings(_env_file=None)
    store = open_store(f"memory://structured-{uuid.uuid4().hex}")
    specs = materialize(wf, run_id="run-json", inputs={}, store_url=store.url, settings=settings)
    results: dict[str, StepResult] = {}

    def run_steps() -> None:
        for spec in specs:
            spec = with_prior_steps(spec, context(wf)[spec.step_id], max_chars=4000)
            results[spec.step_id] = result = execute_step(spec, store=store)
            assert result.status == "succeeded", result.error
            store.commit_result(result)

    seen = contexts_seen(run_steps)
    assert results["brief"].output_json == BRIEF
    assert results["brief"].usage.requests == 2
    assert seen["verdict"] == json.dumps(BRIEF, ensure_ascii=False)
    stored = store.read_result("run-json", "verdict")
    assert stored is not None and stored.output_json == VERDICT
    assert stored.output == json.dumps(VERDICT)

    inprocess: list[StepResult] = []
    run_workflow_inprocess(wf, run_id="run-json", inputs={}, on_step=inprocess.append)
    assert [(r.output, r.output_json, r.usage) for r in inprocess] == [
        (r.output, r.output_json, r.usage) for r in results.values()
    ]


spec = partial(
    step_spec,
    run_id="run-json",
    step_id="brief",
    task={"description": "Brief.", "expected_output": "JSON.", "output_schema": SCHEMA},
)


def test_an_answer_that_never_matches_fails_the_attempt_retryably_saying_why() -> None:
    provider = scripted_agent_data("w", ['{"title": 42}'])
    result = execute_step(spec(agent_provider=provider))

    assert result.status == "failed" and result.error is not None
    assert (result.error.type, result.error.retryable) == ("OutputSchemaError", True)
    assert result.error.message == (
        "step 'brief': the answer does not match the task's output_schema after 3 retries "
        "with feedback: at $.title: 42 is not of type 'string'"
    )


def test_feedback_retries_use_one_model_call_each_and_never_a_conversion_call() -> None:
    # Two answers without any JSON: CrewAI's own converter would ask the model to rewrite
    # the second one (a call that eats the third reply); agentic's never calls the model.
    provider = scripted_agent_data("w", ["No idea.", "Still prose.", '{"title": "ok", "n": 3}'])
    result = execute_step(spec(agent_provider=provider))

    assert result.status == "succeeded", result.error
    assert result.output_json == {"title": "ok", "n": 3}
    assert result.usage.requests == 3


def test_the_inprocess_crew_fails_the_task_whose_answer_does_not_match() -> None:
    agent = scripted_agent_data("w", ["plain words"])
    wf = workflow(
        task("brief", "w", output_schema=SCHEMA, guardrail_max_retries=0),
        task("after", "w"),
        agents=[agent_model(agent)],
    )
    reported: list[StepResult] = []
    with pytest.raises(RetryableStepFailure) as caught:
        run_workflow_inprocess(wf, run_id="run-json", inputs={}, on_step=reported.append)

    assert caught.value.step_id == "brief"
    (failed,) = reported
    assert failed.error is not None and failed.error.type == "OutputSchemaError"
    assert failed.error.message.startswith(
        "step 'brief': the answer does not match the task's output_schema: the answer is not JSON"
    )


def agent_model(data: dict[str, Any]) -> Any:
    from agentic.contracts import AgentProvider

    return AgentProvider.model_validate(data)


def test_agentic_run_and_show_print_the_json(tmp_path: Path, monkeypatch: Any) -> None:
    from typer.testing import CliRunner

    from agentic.cli import _register, app

    _register()
    monkeypatch.setenv("AGENTIC_CONFIG_DIR", str(CATALOG))
    monkeypatch.setenv("AGENTIC_RUN_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("AGENTIC_EXECUTION_BACKEND", "inprocess")
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    ran = runner.invoke(app, ["run", "structured_brief", "--run-id", "run-cli", "--json"])
    assert ran.exit_code == 0, ran.output
    doc = json.loads(ran.stdout)
    assert (doc["output"], doc["output_json"]) == (json.dumps(VERDICT), VERDICT)
    steps = {s["step_id"]: s for s in doc["steps"]}
    assert steps["brief"]["output_json"] == BRIEF

    plain = runner.invoke(app, ["run", "structured_brief", "--run-id", "run-pipe"])
    assert plain.stdout.splitlines()[-3] == json.dumps(VERDICT)  # verbatim, for jq

    shown = runner.invoke(app, ["show", "run-cli"])
    assert shown.exit_code == 0, shown.output
    assert "brief (JSON, " in shown.stdout
    assert '  "title": "Queues in practice",' in shown.stdout  # indented, one key a line


def test_the_tasks_own_guardrail_still_runs_after_the_schema_check() -> None:
    # The schema check passes the first answer; the task's LLM guardrail (answered by the
    # same scripted model) refuses it once, and the second answer passes both.
    replies = [
        '{"title": "a long title"}',
        '{"valid": false, "feedback": "Shorter title."}',
        '{"title": "short"}',
        '{"valid": true}',
    ]
    result = execute_step(
        spec(agent_provider=scripted_agent_data("w", replies), guardrail="The title is short.")
    )

    assert result.status == "succeeded", result.error
    assert result.output_json == {"title": "short"}
    assert result.usage.requests == 4
