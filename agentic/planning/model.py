"""The planner model: the planner provider's LLM, called through the agents' LLM layer.

The LLM is built by :func:`agentic.runtime.llm.build_llm`, exactly as a step's agent LLM
is, so any provider type can plan and a ``scripted`` provider plays the planner in tests
and demos. The runtime (and CrewAI) is imported only when a model is built: the rest of
:mod:`agentic.planning` stays importable where CrewAI is not.

One :class:`PlannerModel` serves a whole planning conversation (the first request, the
repair, every round of an iterative run), so a scripted planner moves on to its next
reply at each call, as a real model answers each call anew.

A scripted planner's replies may use ``{goal}``, ``{topic}`` and ``{round}``; their values
are JSON-escaped, since the reply is JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from agentic.contracts import AgentProvider, Usage
from agentic.errors import ConfigError, PlanError

SYSTEM_MESSAGE = (
    "You are a workflow planner. You answer with one JSON object that matches the schema "
    "you are given, and nothing else."
)


def json_escaped(text: str) -> str:
    """``text`` as it appears inside a JSON string (quotes, backslashes, newlines escaped)."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


class PlannerModel:
    """Asks the planner provider's LLM; counts the calls and the tokens they used.

    Args:
        provider: The planner agent provider.
        goal: The goal (the scripted planner's ``{goal}``).
        topic: The run's topic (the scripted planner's ``{topic}``).
        env: Where API keys and ``required_env`` are read.

    Raises:
        ConfigError: the provider cannot become an LLM here (missing key, unknown type).
    """

    def __init__(
        self, provider: AgentProvider, *, goal: str, topic: str, env: Mapping[str, str]
    ) -> None:
        from agentic import runtime

        runtime.setup()
        from agentic.runtime.llm import build_llm

        self.provider = provider
        self.calls = 0
        self._variables = {"goal": json_escaped(goal), "round": "1"}
        self._llm = build_llm(
            provider, step_id="plan", topic=json_escaped(topic), inputs=self._variables, env=env
        )

    def set_round(self, number: int) -> None:
        """Iterative mode: the round the next calls plan (the scripted ``{round}``)."""
        variables = getattr(self._llm, "variables", None)
        if isinstance(variables, dict):
            variables["round"] = str(number)

    def ask(self, messages: list[dict[str, str]]) -> str:
        """One call of the model with ``messages``; its reply text.

        Raises:
            ConfigError: the model cannot be called as configured.
            PlanError: the call failed (network, rate limit, the model's own error).
        """
        self.calls += 1
        try:
            reply = self._llm.call(messages)
        except ConfigError:
            raise
        except Exception as exc:  # any failure of the model call fails the planning
            raise PlanError(
                f"the planner model {self.provider.id!r} failed: {type(exc).__name__}: {exc}",
                cause=exc,
            ) from exc
        return reply if isinstance(reply, str) else str(reply)

    def usage(self) -> Usage:
        """Tokens used by every call so far (what the LLM layer tracked)."""
        summary: Any = self._llm.get_token_usage_summary()
        return Usage(
            prompt_tokens=int(getattr(summary, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(summary, "completion_tokens", 0) or 0),
        )


def first_messages(prompt: str) -> list[dict[str, str]]:
    """The conversation of a first planning request."""
    return [{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": prompt}]


def repair_messages(
    messages: list[dict[str, str]], reply: str, problems: list[str]
) -> list[dict[str, str]]:
    """``messages`` followed by the invalid ``reply`` and a request to fix ``problems``."""
    listed = "\n".join(f"- {p}" for p in problems)
    ask = (
        f"That plan cannot be used:\n{listed}\n"
        "Reply again with the corrected plan: one JSON object matching the schema, nothing else."
    )
    return [
        *messages,
        {"role": "assistant", "content": reply},
        {"role": "user", "content": ask},
    ]
