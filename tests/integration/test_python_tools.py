"""Python tools and guardrails on the real CrewAI runtime, with the scripted provider: one
step (``execute_step``, what every per-step backend runs) and the ``inprocess`` crew.

The catalog is ``tests/fixtures/python_tools``, found the way a worker finds its own
(``AGENTIC_CONFIG_DIR``): specs carry tool and guardrail ids only.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from agentic.catalog import load_catalog, load_workflow
from agentic.contracts import StepResult, StepSpec, WorkflowConfig
from agentic.errors import RetryableStepFailure
from agentic.materialize import materialize
from agentic.settings import Settings
from tests.factories import scripted_agent_data, step_spec

with warnings.catch_warnings():
    warnings.simplefilter("ignore", ImportWarning)  # CrewAI's own package layout
    from agentic.runtime import execute_step, run_workflow_inprocess

pytestmark = [pytest.mark.procs, pytest.mark.filterwarnings("ignore::ImportWarning")]

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "python_tools"
COUNT = {"tool": "word_count", "args": {"text": "{topic} are fast and simple"}}


@pytest.fixture(autouse=True)
def _fixture_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process's own catalog is the fixture's, as a worker's would be."""
    monkeypatch.setenv("AGENTIC_CONFIG_DIR", str(FIXTURE))
    monkeypatch.delenv("AGENTIC_EXTRA_CONFIG_DIRS", raising=False)
    monkeypatch.delenv("SHOUT_SUFFIX", raising=False)


@pytest.fixture
def count_words() -> WorkflowConfig:
    return load_workflow("count_words", load_catalog([FIXTURE]))


def spec_of(wf: WorkflowConfig) -> StepSpec:
    (spec,) = materialize(
        wf, run_id="r-tools", inputs={}, store_url="memory://x", settings=Settings()
    )
    return spec


def one_step(replies: list[Any], **fields: Any) -> StepSpec:
    return step_spec(agent_provider=scripted_agent_data("w", replies), topic="queues", **fields)


def test_a_step_calls_its_tool_and_its_guardrail_sends_it_back_once(
    count_words: WorkflowConfig,
) -> None:
    result = execute_step(spec_of(count_words))
    assert result.status == "succeeded", result.error
    # "The text has 5 words" was refused (no period); CrewAI's re-run called the tool again
    assert result.output == "The text has 5 words."
    assert result.usage.requests == 4


def test_the_inprocess_crew_runs_the_same_tool_and_guardrail_to_the_same_output(
    count_words: WorkflowConfig,
) -> None:
    reported: list[StepResult] = []
    output = run_workflow_inprocess(
        count_words, run_id="r-crew", inputs={}, on_step=reported.append
    )
    assert output == "The text has 5 words."
    assert [(r.step_id, r.status, r.usage.requests) for r in reported] == [
        ("count", "succeeded", 4)
    ]


def test_a_guardrail_still_refusing_after_its_retries_fails_the_attempt_as_retryable(
    count_words: WorkflowConfig,
) -> None:
    no_retry = count_words.model_copy(
        update={"tasks": [count_words.tasks[0].model_copy(update={"guardrail_max_retries": 0})]}
    )
    result = execute_step(spec_of(no_retry))
    assert result.status == "failed" and result.error is not None
    assert (result.error.type, result.error.retryable) == ("GuardrailFailed", True)
    assert result.error.message == (
        "guardrail 'ends_with_period' refused the output after 0 re-runs: "
        "End the answer with a period."
    )
    reported: list[StepResult] = []
    with pytest.raises(RetryableStepFailure) as failed:
        run_workflow_inprocess(no_retry, run_id="r-crew", inputs={}, on_step=reported.append)
    assert failed.value.step_id == "count"
    assert [r.error.type for r in reported if r.error] == ["GuardrailFailed"]


def test_a_guardrail_sentence_is_judged_by_the_task_agents_llm() -> None:
    replies = [
        "Answer A",
        '{"valid": false, "feedback": "no period"}',  # CrewAI's LLM guardrail asks the agent's LLM
        "Answer B.",
        '{"valid": true, "feedback": null}',
    ]
    sentence = "The answer ends with a period."
    passed = execute_step(one_step(replies, guardrail=sentence, guardrail_max_retries=1))
    assert (passed.status, passed.output) == ("succeeded", "Answer B."), passed.error
    refused = execute_step(one_step(replies[:2], guardrail=sentence, guardrail_max_retries=1))
    assert refused.error is not None and refused.error.type == "GuardrailFailed"
    assert refused.error.message.endswith("after 1 re-run: no period")


def test_a_tool_class_is_built_with_its_args_expanded_and_offered_under_its_catalog_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "loud.yaml").write_text(
        "id: Loud-Voice\npython: agentic.tools.demo_python:Shout\n"
        "args: {suffix: '${SHOUT_SUFFIX}'}\nrequired_env: [SHOUT_SUFFIX]\n"
    )
    monkeypatch.setenv("AGENTIC_EXTRA_CONFIG_DIRS", f'["{tmp_path}"]')
    # The class calls itself "shout"; the agent is offered sanitize_tool_name("Loud-Voice").
    replies = [{"tool": "loud_voice", "args": {"text": "hi {topic}"}}, "{tool_result}"]
    spec = one_step(replies, tools=["Loud-Voice"])
    result = execute_step(spec, env={"SHOUT_SUFFIX": "?!"})
    assert (result.status, result.output) == ("succeeded", "HI QUEUES?!"), result.error
    missing = execute_step(spec, env={})
    assert missing.error is not None and not missing.error.retryable
    assert "SHOUT_SUFFIX" in missing.error.message


@pytest.mark.parametrize(
    ("tools", "guardrail", "says"),
    [
        (["not_registered"], None, "tool 'not_registered' is not in the catalog of the process"),
        ([], {"registered": "nope"}, "guardrail 'nope' is not in the catalog of the process"),
        (["web_search"], None, "needs the crewai_tools package, which is not installed"),
    ],
)
def test_code_this_process_cannot_resolve_fails_the_step_for_good_naming_it(
    tools: list[str], guardrail: dict[str, str] | None, says: str
) -> None:
    result = execute_step(one_step(["never reached"], tools=tools, guardrail=guardrail))
    assert result.status == "failed" and result.error is not None
    assert not result.error.retryable
    assert says in result.error.message
    if tools == ["web_search"]:
        assert "pip install crewai-tools" in result.error.message


def test_a_tool_the_submitting_side_knows_but_this_process_does_not_fails_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count_words: WorkflowConfig
) -> None:
    # The spec was made from a catalog with word_count; this worker's catalog has no tools.
    monkeypatch.setenv("AGENTIC_CONFIG_DIR", str(tmp_path))
    result = execute_step(spec_of(count_words))
    assert result.status == "failed" and result.error is not None
    assert (result.error.type, result.error.retryable) == ("ConfigError", False)
    assert result.error.message == (
        "tool 'word_count' is not in the catalog of the process that runs the step "
        f"(no tools/word_count.yaml under {tmp_path}): register it there"
    )
