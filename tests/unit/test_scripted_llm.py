"""The scripted provider: a real CrewAI LLM that replays a script, offline and deterministic."""

from __future__ import annotations

import time
import warnings
from typing import Any

import pytest

from agentic.errors import FatalStepFailure, RetryableStepFailure
from tests.factories import scripted_agent

with warnings.catch_warnings():
    # Importing CrewAI emits an ImportWarning about its own package layout (crewai.rag).
    warnings.simplefilter("ignore", ImportWarning)
    from agentic.runtime.scripted import (
        ScriptedLLM,
        build_scripted_llm,
        last_observation,
    )

pytestmark = pytest.mark.filterwarnings("ignore::ImportWarning")


def llm(attempt: int = 1, **script: Any) -> ScriptedLLM:
    return build_scripted_llm(
        scripted_agent("scribe", **script),
        step_id="summarize",
        topic="queues",
        inputs={"audience": "operators"},
        attempt=attempt,
    )


def answer(text: str) -> str:
    """The final answer CrewAI's ReAct parser reads out of a reply."""
    from crewai.agents.parser import AgentFinish, parse

    parsed = parse(text)
    assert isinstance(parsed, AgentFinish)
    return str(parsed.output)


def test_a_string_reply_is_a_final_answer_with_topic_step_and_inputs_filled_in() -> None:
    reply = llm(replies=["{step_id}: {topic} for {audience}"]).call("Go.")
    assert answer(reply) == "summarize: queues for operators"


def test_unknown_placeholders_and_json_braces_are_left_as_written() -> None:
    reply = llm(replies=['{nobody} knows {"k": 1} about {topic}']).call("Go.")
    assert answer(reply) == '{nobody} knows {"k": 1} about queues'


def test_task_placeholder_is_the_description_of_the_calling_task() -> None:
    from crewai import Task

    task = Task(description="Summarize the queue design.", expected_output="A summary.")
    reply = llm(replies=["Did: {task}"]).call("Go.", from_task=task)
    assert answer(reply) == "Did: Summarize the queue design."


def test_replies_are_replayed_in_order_and_the_last_answer_repeats() -> None:
    scripted = llm(replies=["first", "second"])
    answers = [answer(scripted.call("Go.")) for _ in range(4)]
    assert answers == ["first", "second", "second", "second"]


def test_the_same_script_gives_the_same_replies_on_every_instance() -> None:
    def replies() -> list[str]:
        scripted = llm(replies=[{"tool": "word_count", "args": {"text": "{topic}"}}, "n"])
        return [scripted.call("Tool Name: demo_word_count\nGo."), scripted.call("Go.")]

    assert replies() == replies()


def test_a_tool_call_is_a_react_action_naming_the_offered_tool() -> None:
    from crewai.agents.parser import AgentAction, parse

    prompt = (
        "Tool Name: mcp_127_0_0_1_8765_mcp_word_count\nTool Arguments: {}\n"
        "Tool Name: mcp_127_0_0_1_8765_mcp_lookup_fact\nTool Arguments: {}\n"
    )
    scripted = llm(replies=[{"tool": "word_count", "args": {"text": "about {topic}"}}])
    parsed = parse(scripted.call([{"role": "system", "content": prompt}]))
    assert isinstance(parsed, AgentAction)
    assert parsed.tool == "mcp_127_0_0_1_8765_mcp_word_count"
    assert parsed.tool_input == '{"text": "about queues"}'


def test_a_tool_that_is_not_offered_is_called_by_its_scripted_name() -> None:
    from crewai.agents.parser import AgentAction, parse

    scripted = llm(replies=[{"tool": "word_count", "args": {}}])
    parsed = parse(scripted.call("Tool Name: lookup_fact\n"))
    assert isinstance(parsed, AgentAction)
    assert parsed.tool == "word_count"


def test_tool_result_is_the_last_observation_in_the_conversation() -> None:
    messages = [
        {"role": "user", "content": "Begin"},
        {"role": "assistant", "content": "Action: a\nAction Input: {}\nObservation: 3"},
        {"role": "assistant", "content": "Action: b\nAction Input: {}\nObservation: forty two"},
        {"role": "user", "content": "Analyze the tool result."},
    ]
    assert last_observation(messages) == "forty two"
    assert answer(llm(replies=["got {tool_result}"]).call(messages)) == "got forty two"


def test_each_call_counts_prompt_and_reply_words_as_tokens() -> None:
    scripted = llm(replies=["one two three"])
    reply = scripted.call([{"role": "user", "content": "four words of prompt"}])
    usage = scripted.get_token_usage_summary()
    assert usage.prompt_tokens == 4
    assert usage.completion_tokens == len(reply.split())
    assert usage.successful_requests == 1


def test_delay_is_slept_before_each_reply() -> None:
    scripted = llm(replies=["a"], delay_s=0.2)
    started = time.perf_counter()
    scripted.call("Go.")
    scripted.call("Go.")
    assert time.perf_counter() - started >= 0.4


def test_error_mode_fails_the_scripted_attempts_with_a_retryable_error() -> None:
    fail = {"times": 2, "mode": "error", "message": "upstream unavailable"}
    for attempt in (1, 2):
        with pytest.raises(RetryableStepFailure, match="upstream unavailable") as caught:
            llm(attempt, replies=["ok"], fail=fail).call("Go.")
        assert caught.value.retryable
    assert answer(llm(3, replies=["ok"], fail=fail).call("Go.")) == "ok"


def test_fatal_mode_fails_with_an_error_that_is_not_retryable() -> None:
    fail = {"times": 1, "mode": "fatal", "message": "bad request"}
    with pytest.raises(FatalStepFailure, match="bad request") as caught:
        llm(1, replies=["ok"], fail=fail).call("Go.")
    assert not caught.value.retryable
    assert answer(llm(2, replies=["ok"], fail=fail).call("Go.")) == "ok"
