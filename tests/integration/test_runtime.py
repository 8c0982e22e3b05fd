"""The agent runtime: one step as a CrewAI mini-crew, and a whole workflow as one crew."""

from __future__ import annotations

import os
import uuid
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from agentic.catalog import load_catalog, load_workflow
from agentic.contracts import RunRecord, RunRequest, StepResult, WorkflowConfig
from agentic.errors import StepFailure
from agentic.graph import context
from agentic.materialize import cap_output, materialize, with_prior_steps
from agentic.settings import Settings
from agentic.store import open_store
from agentic.tools.demo_mcp import FACTS
from tests.factories import scripted_agent_data, step_spec

with warnings.catch_warnings():
    # Importing CrewAI emits an ImportWarning about its own package layout (crewai.rag).
    warnings.simplefilter("ignore", ImportWarning)
    from crewai.events import TaskStartedEvent, crewai_event_bus

    from agentic.runtime import execute_step, run_workflow_inprocess
    from agentic.runtime.step import with_outputs_read

pytestmark = [pytest.mark.procs, pytest.mark.filterwarnings("ignore::ImportWarning")]

CONFIG = Path(__file__).resolve().parents[2] / "config"


# The step every single-step test runs; each test gives it the agent provider it is about.
spec = partial(
    step_spec,
    run_id="run-rt",
    step_id="write",
    workflow_name="rt",
    topic="queues",
    inputs={"topic": "queues", "audience": "operators"},
    task={"description": "Write about queues.", "expected_output": "A paragraph."},
    store_url="memory://unused",
)


def test_a_step_succeeds_with_its_output_usage_timing_and_worker() -> None:
    result = execute_step(
        spec(agent_provider=scripted_agent_data("w", ["{topic} for {audience}, step {step_id}"]))
    )
    assert result.status == "succeeded", result.error
    assert result.output == "queues for operators, step write"
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    assert result.timing.started_at and result.timing.finished_at
    assert result.timing.started_at <= result.timing.finished_at
    assert result.worker is not None and result.worker.pid == os.getpid()
    assert (result.run_id, result.step_id, result.attempt) == ("run-rt", "write", 1)


def test_the_same_spec_gives_the_same_output_and_usage() -> None:
    step = spec(agent_provider=scripted_agent_data("w", ["Answer on {topic}."]))
    first, second = execute_step(step), execute_step(step)
    assert (first.output, first.usage) == (second.output, second.usage)


def test_a_scripted_error_fails_retryably_and_the_next_attempt_succeeds() -> None:
    provider = scripted_agent_data(
        "w", ["done"], fail={"times": 1, "mode": "error", "message": "flaky"}
    )
    failed = execute_step(spec(agent_provider=provider, attempt=1))
    assert failed.status == "failed" and failed.error is not None
    assert (failed.error.type, failed.error.retryable) == ("ScriptedError", True)
    assert "flaky" in failed.error.message
    assert execute_step(spec(agent_provider=provider, attempt=2)).output == "done"


def test_a_scripted_fatal_error_is_not_retryable() -> None:
    provider = scripted_agent_data(
        "w", ["done"], fail={"times": 1, "mode": "fatal", "message": "refused"}
    )
    result = execute_step(spec(agent_provider=provider))
    assert result.error is not None
    assert (result.error.type, result.error.retryable) == ("ScriptedFatalError", False)


def test_a_missing_api_key_fails_the_step_for_good_without_calling_the_model() -> None:
    provider = {
        "id": "gpt",
        "type": "openai",
        "model": "gpt-4o-mini",
        "role": "r",
        "goal": "g",
        "backstory": "b",
        "api_key_env": "AGENTIC_TEST_MISSING_KEY",
    }
    result = execute_step(spec(agent_provider=provider), env={})
    assert result.status == "failed" and result.error is not None
    assert (result.error.type, result.error.retryable) == ("MissingEnvError", False)
    assert "AGENTIC_TEST_MISSING_KEY" in result.error.message


def test_a_malformed_provider_entry_fails_the_step_for_good_naming_the_field() -> None:
    result = execute_step(spec(agent_provider={"id": "broken", "type": "scripted", "role": "r"}))
    assert result.error is not None
    assert (result.error.type, result.error.retryable) == ("CatalogError", False)
    assert "'broken'" in result.error.message and "goal" in result.error.message


def test_files_declared_in_the_output_are_saved_as_artifacts(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")
    reply = "Report below.\n```markdown file=report.md\n# {topic}\n```\n"
    result = execute_step(spec(agent_provider=scripted_agent_data("w", [reply])), store=store)
    assert result.status == "succeeded", result.error
    assert [(a.path, a.mime) for a in result.artifacts] == [("report.md", "text/markdown")]
    assert store.read_artifact("run-rt", "write", "report.md") == b"# queues\n"


def test_an_artifact_name_extraction_accepts_never_fails_the_step(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}")
    files = ("_notes.md", "a+b.txt", "a", "a/b")  # a/b needs the file a to be a folder
    reply = "Done.\n" + "".join(f"```text file={name}\n{name}\n```\n" for name in files)

    result = execute_step(spec(agent_provider=scripted_agent_data("w", [reply])), store=store)

    assert result.status == "succeeded", result.error
    assert result.output.startswith("Done.")
    assert [a.path for a in result.artifacts] == ["_notes.md", "a+b.txt", "a"]
    assert store.read_artifact("run-rt", "write", "a+b.txt") == b"a+b.txt\n"


def demo_workflow() -> WorkflowConfig:
    return load_workflow("demo", load_catalog([CONFIG], env={}))


def per_step_outputs(wf: WorkflowConfig, inputs: dict[str, str]) -> dict[str, str]:
    """Every step as its own mini-crew seeing its dependencies' committed outputs by
    reference: what workers do."""
    settings = Settings()
    store = open_store(f"memory://run-steps-{uuid.uuid4().hex}")
    specs = materialize(
        wf, run_id="run-steps", inputs=inputs, store_url=store.url, settings=settings
    )
    seen = context(wf)
    outputs: dict[str, str] = {}
    for step in specs:
        step = with_prior_steps(step, seen[step.step_id], max_chars=settings.prior_output_max_chars)
        result = execute_step(step)
        assert result.status == "succeeded", result.error
        store.commit_result(result)
        outputs[step.step_id] = result.output
    return outputs


def test_a_step_reads_the_outputs_it_sees_from_the_store_cut_to_their_limit() -> None:
    store = open_store(f"memory://prior-{uuid.uuid4().hex}")
    store.commit_result(
        StepResult(run_id="run-rt", step_id="research", attempt=1, status="succeeded",
                   output="R" * 50 + "{braces}")
    )  # fmt: skip
    step = with_prior_steps(
        spec(agent_provider=scripted_agent_data("w", ["done"]), store_url=store.url),
        ["research"],
        max_chars=20,
    )

    read = with_outputs_read(step, store)

    assert read.prior_outputs == {"research": cap_output("R" * 50 + "{braces}", 20)}
    assert read.prior_outputs["research"].startswith("R" * 20 + "\n\n[… truncated")
    assert execute_step(step, store=store).status == "succeeded"


def test_a_step_whose_prior_output_is_not_in_the_store_fails_retryably() -> None:
    store = open_store(f"memory://prior-{uuid.uuid4().hex}")
    step = with_prior_steps(
        spec(agent_provider=scripted_agent_data("w", ["done"]), store_url=store.url),
        ["research"],
        max_chars=4000,
    )

    result = execute_step(step, store=store)

    assert result.status == "failed" and result.error is not None
    assert result.error.retryable and result.error.type == "StoreError"
    assert "holds no succeeded result of step 'research'" in result.error.message


def test_the_inprocess_crew_produces_the_same_outputs_as_per_step_execution() -> None:
    wf, inputs = demo_workflow(), {"topic": "durable queues"}
    reported: list[StepResult] = []
    final = run_workflow_inprocess(wf, run_id="run-crew", inputs=inputs, on_step=reported.append)
    crew_outputs = {r.step_id: r.output for r in reported}
    assert crew_outputs == per_step_outputs(wf, inputs)
    assert final == crew_outputs[wf.task_sequence[-1]]
    assert FACTS["agentic"] in crew_outputs["research"]  # the MCP tool really ran


def test_the_inprocess_crew_reports_each_task_in_order_with_usage_and_timing(
    tmp_path: Path,
) -> None:
    wf = WorkflowConfig.model_validate(
        {
            "name": "two",
            "topic": "queues",
            "agent_providers": [
                scripted_agent_data("a", ["A on {topic}\n```text file=a.txt\n{step_id}\n```"]),
                {
                    **scripted_agent_data("b", ["B on {topic}"]),
                    "price": {"input_per_million": 3.0, "output_per_million": 15.0},
                },
            ],
            "tasks": [
                {
                    "id": "first",
                    "agent_provider_id": "a",
                    "description": "1",
                    "expected_output": "1",
                },
                {
                    "id": "second",
                    "agent_provider_id": "b",
                    "description": "2",
                    "expected_output": "2",
                },
            ],
            "task_sequence": ["first", "second"],
        }
    )
    store = open_store(f"file://{tmp_path}")
    reported: list[StepResult] = []
    run_workflow_inprocess(wf, run_id="run-2", inputs={}, on_step=reported.append, store=store)
    assert [r.step_id for r in reported] == ["first", "second"]
    assert all(r.status == "succeeded" and r.usage.total_tokens > 0 for r in reported)
    first, second = (r.timing for r in reported)
    assert first.finished_at and second.started_at and first.finished_at <= second.started_at
    assert [a.path for a in reported[0].artifacts] == ["a.txt"]
    assert store.read_artifact("run-2", "first", "a.txt") == b"first\n"
    # Costed at its provider's price; the unpriced provider's cost is unknown, not zero.
    usage = reported[1].usage
    assert usage.cost_usd == pytest.approx(
        (usage.prompt_tokens * 3.0 + usage.completion_tokens * 15.0) / 1_000_000
    )
    assert reported[0].usage.cost_usd is None


def test_with_depends_on_each_task_sees_only_its_dependencies() -> None:
    providers = [scripted_agent_data(p, [f"output of {p}"]) for p in ("a", "b", "c")]
    tasks = [
        {"id": "a", "agent_provider_id": "a", "description": "A", "expected_output": "x"},
        {"id": "b", "agent_provider_id": "b", "description": "B", "expected_output": "x"},
        {
            "id": "c",
            "agent_provider_id": "c",
            "description": "C",
            "expected_output": "x",
            "depends_on": ["b"],
        },
    ]
    wf = WorkflowConfig.model_validate(
        {
            "name": "dag",
            "agent_providers": providers,
            "tasks": tasks,
            "task_sequence": ["a", "b", "c"],
        }
    )
    contexts: dict[str, str] = {}
    with crewai_event_bus.scoped_handlers():

        @crewai_event_bus.on(TaskStartedEvent)
        def _record(source: Any, event: TaskStartedEvent) -> None:
            contexts[event.task.name] = event.context or ""

        run_workflow_inprocess(wf, run_id="run-dag", inputs={}, on_step=lambda r: None)
        crewai_event_bus.flush()
    assert "output of b" in contexts["c"] and "output of a" not in contexts["c"]
    assert contexts["b"] == ""


def test_a_failing_task_is_reported_and_raised_and_later_tasks_do_not_run() -> None:
    boom = scripted_agent_data(
        "x", ["never"], fail={"times": 1, "mode": "fatal", "message": "bad input"}
    )
    wf = WorkflowConfig.model_validate(
        {
            "name": "fails",
            "agent_providers": [scripted_agent_data("ok", ["fine"]), boom],
            "tasks": [
                {
                    "id": "one",
                    "agent_provider_id": "ok",
                    "description": "1",
                    "expected_output": "1",
                },
                {"id": "two", "agent_provider_id": "x", "description": "2", "expected_output": "2"},
                {
                    "id": "three",
                    "agent_provider_id": "ok",
                    "description": "3",
                    "expected_output": "3",
                },
            ],
            "task_sequence": ["one", "two", "three"],
        }
    )
    reported: list[StepResult] = []
    with pytest.raises(StepFailure, match="bad input") as caught:
        run_workflow_inprocess(wf, run_id="run-f", inputs={}, on_step=reported.append)
    assert (caught.value.step_id, caught.value.retryable) == ("two", False)
    assert [(r.step_id, r.status) for r in reported] == [("one", "succeeded"), ("two", "failed")]
    assert reported[1].error is not None and reported[1].error.type == "ScriptedFatalError"


def test_kickoffs_that_fail_or_are_interrupted_leave_no_event_scopes_behind() -> None:
    """CrewAI keeps its event scopes in a context variable: a kickoff that ends without
    its ending events must not hand them to the next one (after 100, every kickoff of the
    thread fails), as a thread host or the default backend's retries would see."""
    import _thread
    import threading

    from crewai.events.event_context import _event_id_stack

    from agentic.contracts import ScriptedFailure
    from agentic.runtime import execute_step
    from tests.factories import scripted_agent

    before = _event_id_stack.get()
    failing = scripted_agent("flaky", fail=ScriptedFailure(times=5, mode="error"))
    for attempt in range(1, 4):
        spec = step_spec(agent_provider=failing.model_dump(mode="json"), attempt=attempt)
        assert execute_step(spec).status == "failed"
    assert _event_id_stack.get() == before

    # An interrupt in the middle of a model call (what a timeout or Ctrl-C does inprocess).
    slow = scripted_agent("slow", delay_s=5)
    timer = threading.Timer(0.5, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            execute_step(step_spec(agent_provider=slow.model_dump(mode="json")))
    finally:
        timer.cancel()
    assert _event_id_stack.get() == before


def test_a_step_of_a_sequence_reads_the_outputs_of_every_step_before_it() -> None:
    wf = demo_workflow()
    store = open_store(f"memory://prior-{uuid.uuid4().hex}")
    record = RunRecord(
        run_id="run-rt", request=RunRequest(workflow=wf), workflow=wf, backend="inprocess"
    )
    store.create_run(record)
    first, second, last = wf.task_sequence
    for step_id in (first, second):
        store.commit_result(
            StepResult(run_id="run-rt", step_id=step_id, attempt=1, status="succeeded",
                       output=f"{step_id} notes")
        )  # fmt: skip
    step = with_prior_steps(
        spec(step_id=last, store_url=store.url, agent_provider=scripted_agent_data("w", ["ok"])),
        [first, second],
        max_chars=4000,
        all_earlier=True,
    )
    assert step.prior_steps == [] and step.prior_all_earlier  # the spec lists nothing

    read = with_outputs_read(step, store)

    assert read.prior_outputs == {first: f"{first} notes", second: f"{second} notes"}
