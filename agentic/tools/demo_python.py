"""Small, deterministic Python tools and guardrails for demos and tests.

Registered in a catalog, never named in a workflow (docs/runtime.md, "Python tools")::

    # <catalog>/tools/word_count.yaml
    id: word_count
    description: Count the words of a text.
    python: agentic.tools.demo_python:word_count

    # <catalog>/tools/shout.yaml
    id: shout
    python: agentic.tools.demo_python:Shout
    args: {suffix: "!"}

    # <catalog>/guardrails/ends_with_period.yaml
    id: ends_with_period
    python: agentic.tools.demo_python:ends_with_period

A workflow then names them by id: ``tools: [word_count]`` and
``guardrail: {registered: ends_with_period}``. CrewAI is imported here (for :class:`Shout`),
so only a process that runs steps imports this module.
"""

from __future__ import annotations

from typing import Any

from crewai.tools import BaseTool
from pydantic import BaseModel, Field


def word_count(text: str) -> int:
    """Count the words in a text (runs of non-whitespace characters)."""
    return len(text.split())


class ShoutArgs(BaseModel):
    text: str = Field(description="The text to shout.")


class Shout(BaseTool):
    """A tool class with a constructor argument: the text in capitals, then ``suffix``."""

    name: str = "shout"
    description: str = "Repeat a text in capital letters."
    args_schema: type[BaseModel] = ShoutArgs
    suffix: str = "!"

    def _run(self, text: str) -> str:
        return text.upper() + self.suffix


def ends_with_period(output: Any) -> tuple[bool, Any]:
    """A guardrail: the output (CrewAI's ``TaskOutput``) must end with a period."""
    text = str(getattr(output, "raw", output)).strip()
    if text.endswith("."):
        return True, text
    return False, "End the answer with a period."


def at_most_words(limit: int) -> Any:
    """A guardrail factory: outputs of at most ``limit`` words (register its result, e.g.
    ``short_answer = at_most_words(50)`` in a module of your own)."""

    def check(output: Any) -> tuple[bool, Any]:
        text = str(getattr(output, "raw", output))
        words = len(text.split())
        if words <= limit:
            return True, text
        return False, f"Answer in at most {limit} words; this answer has {words}."

    return check


short_answer = at_most_words(50)
"""A registered guardrail's target may be any callable of one argument, a closure too."""
