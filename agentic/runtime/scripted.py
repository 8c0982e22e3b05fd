"""The ``scripted`` provider: an offline, deterministic CrewAI LLM.

A ``type: scripted`` agent provider carries a :class:`~agentic.contracts.ScriptedScript`.
:class:`ScriptedLLM` is a real CrewAI ``BaseLLM`` (CrewAI's documented extension point for
custom models) that answers each call of one step with the next reply of that script:

* a string is the final answer. ``{topic}``, ``{step_id}``, ``{task}`` (the task description
  the agent received), ``{tool_result}`` (the last tool observation in the conversation) and
  the step's input names are filled in; any other ``{placeholder}`` is left as written.
* a tool call is answered in CrewAI's text ReAct format (``Thought / Action / Action
  Input``), so CrewAI's executor parses it and runs the tool through its normal path. The
  script names a tool as the MCP server does (``word_count``); like a real model, the
  scripted one reads the offered tool names from its prompt (agentic offers MCP tools as
  ``<MCP provider id>_<tool>``) and picks the one ending in ``_word_count``. String
  arguments are templated like answers.

When the replies run out, the last final answer is repeated. ``delay_s`` sleeps before
each reply. ``fail`` makes attempts ``1..times`` of every step fail: ``error`` raises a
retryable error, ``fatal`` a non-retryable one, ``unavailable`` fails as a rate-limited
or down model server does (moving the step down its fallback chain), ``crash`` exits the
process with status 3 and ``hang`` sleeps until the process is killed.

Token usage is counted deterministically (whitespace-separated words of the prompt and the
reply) and reported through CrewAI's own usage tracking, so ``crew.kickoff()`` usage
metrics and :class:`~agentic.contracts.Usage` see it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from typing import Any

from crewai.llms.base_llm import BaseLLM, llm_call_context
from crewai.utilities.message_utils import message_content_text
from pydantic import Field, PrivateAttr

from agentic.contracts import AgentProvider, ScriptedScript, ScriptedToolCall
from agentic.errors import (
    ConfigError,
    FatalStepFailure,
    ProviderUnavailable,
    RetryableStepFailure,
)

CRASH_EXIT_CODE = 3
DEFAULT_ANSWER = "Step {step_id} finished for topic {topic}."
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_OBSERVATION = "Observation:"
_TOOL_NAME = re.compile(r"^Tool Name: (\S+)", re.MULTILINE)
# Large enough that CrewAI never summarizes a scripted conversation: summarizing would
# spend replies the script meant for the task.
_CONTEXT_WINDOW = 1_000_000


def fill_template(template: str, values: Mapping[str, str]) -> str:
    """Replace ``{name}`` placeholders found in ``values``; leave every other brace alone."""

    def _sub(match: re.Match[str]) -> str:
        name = match.group(1)
        return values[name] if name in values else match.group(0)

    return _PLACEHOLDER.sub(_sub, template)


def count_words(text: str) -> int:
    """The scripted provider's token count: whitespace-separated words."""
    return len(text.split())


def last_observation(messages: str | list[Any]) -> str:
    """The text after the last ``Observation:`` in the conversation (a tool's result).

    System messages are skipped: CrewAI's ReAct format instructions there say
    ``Observation: the result of the action``, which no tool answered (a task re-run after a
    guardrail's refusal starts a conversation with no observation yet).
    """
    if isinstance(messages, str):
        texts = [messages]
    else:
        texts = [message_content_text(m) for m in messages if _role(m) != "system"]
    for text in reversed(texts):
        at = text.rfind(_OBSERVATION)
        if at != -1:
            return text[at + len(_OBSERVATION) :].strip()
    return ""


class ScriptedLLM(BaseLLM):
    """A CrewAI LLM that replays a script; never touches the network.

    Build one per step (:func:`build_scripted_llm`): the reply position is per instance.
    """

    llm_type: str = "scripted"
    script: ScriptedScript
    attempt: int = Field(1, ge=1)
    variables: dict[str, str] = Field(default_factory=dict)
    _position: int = PrivateAttr(0)

    def call(
        self,
        messages: str | list[Any],
        tools: list[dict[str, Any]] | None = None,
        callbacks: list[Any] | None = None,
        available_functions: dict[str, Any] | None = None,
        from_task: Any | None = None,
        from_agent: Any | None = None,
        response_model: Any | None = None,
    ) -> str:
        """Answer with the next reply of the script, in CrewAI's ReAct text format."""
        self._maybe_fail()
        if self.script.delay_s:
            time.sleep(self.script.delay_s)
        with llm_call_context():
            self._emit_call_started_event(
                messages=messages, from_task=from_task, from_agent=from_agent
            )
            text = self._reply_text(messages, from_task)
            usage = {
                "prompt_tokens": self.get_input_tokens_count(messages),
                "completion_tokens": count_words(text),
            }
            self._track_token_usage_internal(usage)
            self._emit_call_completed_event(
                response=text,
                call_type=_llm_call_type(),
                from_task=from_task,
                from_agent=from_agent,
                messages=messages,
                usage=usage,
            )
        return text

    def get_input_tokens_count(
        self, messages: str | list[Any], tools: Any = None, response_model: Any = None
    ) -> int:
        """Words of every message: deterministic, and no 'approximate count' warning."""
        if isinstance(messages, str):
            return count_words(messages)
        return sum(count_words(message_content_text(m)) for m in messages)

    def get_context_window_size(self) -> int:
        """A window no scripted conversation fills."""
        return _CONTEXT_WINDOW

    def supports_function_calling(self) -> bool:
        """No native function calling: CrewAI drives the script with its text ReAct
        format. Said explicitly, as CrewAI's own LLMs do: some of its code (its output
        converter) asks without checking that the method exists."""
        return False

    def _maybe_fail(self) -> None:
        fail = self.script.fail
        if fail is None or self.attempt > fail.times:
            return
        message = f"{fail.message} (attempt {self.attempt} of {fail.times} scripted to fail)"
        if fail.mode == "error":
            raise RetryableStepFailure(message, error_type="ScriptedError")
        if fail.mode == "fatal":
            raise FatalStepFailure(message, error_type="ScriptedFatalError")
        if fail.mode == "unavailable":
            raise ProviderUnavailable(message, error_type="ScriptedProviderUnavailable")
        if fail.mode == "crash":
            os._exit(CRASH_EXIT_CODE)
        while True:  # hang: only the step's timeout or a kill ends this
            time.sleep(3600)

    def _next_reply(self) -> str | ScriptedToolCall:
        replies = self.script.replies
        if self._position < len(replies):
            reply = replies[self._position]
            self._position += 1
            return reply
        answers = [r for r in replies if isinstance(r, str)]
        return answers[-1] if answers else DEFAULT_ANSWER

    def _reply_text(self, messages: str | list[Any], from_task: Any | None) -> str:
        values = dict(self.variables)
        values["task"] = str(getattr(from_task, "description", "") or "")
        values["tool_result"] = last_observation(messages)
        reply = self._next_reply()
        if isinstance(reply, ScriptedToolCall):
            return _tool_call_text(reply, values, offered_tools(messages))
        answer = fill_template(reply, values)
        if self.script.repeat > 1:
            answer = "\n".join([answer] * self.script.repeat)
        return f"Thought: I now know the final answer.\nFinal Answer: {answer}"


def _role(message: Any) -> Any:
    return message.get("role") if isinstance(message, dict) else getattr(message, "role", None)


def offered_tools(messages: str | list[Any]) -> list[str]:
    """The tool names CrewAI lists in the prompt (``Tool Name: <name>`` lines)."""
    texts = [messages] if isinstance(messages, str) else [message_content_text(m) for m in messages]
    return [name for text in texts for name in _TOOL_NAME.findall(text)]


def offered_name(tool: str, offered: list[str]) -> str:
    """The offered name of the scripted ``tool``.

    An exact name wins; otherwise the one offered name ending in ``_<tool>``. A tool that
    is not offered is called as written, and CrewAI tells the agent it does not exist.
    """
    if tool in offered:
        return tool
    matches = [name for name in offered if name.endswith(f"_{tool}")]
    return matches[0] if len(matches) == 1 else tool


def _tool_call_text(call: ScriptedToolCall, values: Mapping[str, str], offered: list[str]) -> str:
    args = {k: _fill_value(v, values) for k, v in call.args.items()}
    name = offered_name(call.tool, offered)
    return (
        f"Thought: I should use the {name} tool.\n"
        f"Action: {name}\n"
        f"Action Input: {json.dumps(args, sort_keys=True)}"
    )


def _fill_value(value: Any, values: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return fill_template(value, values)
    if isinstance(value, list):
        return [_fill_value(v, values) for v in value]
    if isinstance(value, dict):
        return {k: _fill_value(v, values) for k, v in value.items()}
    return value


def _llm_call_type() -> Any:
    from crewai.events.types.llm_events import LLMCallType

    return LLMCallType.LLM_CALL


def build_scripted_llm(
    provider: AgentProvider,
    *,
    step_id: str,
    topic: str,
    inputs: Mapping[str, str] | None = None,
    attempt: int = 1,
) -> ScriptedLLM:
    """A fresh :class:`ScriptedLLM` for one attempt of one step.

    Args:
        provider: A ``type: scripted`` agent provider.
        step_id: Fills ``{step_id}``.
        topic: Fills ``{topic}``.
        inputs: The run's inputs; each fills the placeholder of its name.
        attempt: The attempt number; attempts up to ``script.fail.times`` fail.
    """
    if provider.type != "scripted" or provider.script is None:
        raise ConfigError(f"agent provider {provider.id!r} is not a scripted provider")
    variables = dict(inputs or {})
    variables.update(topic=topic, step_id=step_id)
    return ScriptedLLM(
        model=f"scripted/{provider.id}",
        provider="scripted",
        script=provider.script,
        attempt=attempt,
        variables=variables,
    )
