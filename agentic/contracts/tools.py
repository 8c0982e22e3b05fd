"""Python tools and registered guardrails: catalog entries naming installed code, and the ids
workflows and step specs use to refer to them.

An import path is code: it lives only in a catalog file (``tools/<id>.yaml``,
``guardrails/<id>.yaml``) of the process that runs the step, never in a workflow, a submit
or a step spec (DESIGN §9, docs/security.md). Workflows, tasks and specs carry ids
(:data:`ToolRef`, :class:`RegisteredGuardrail`), and a value that is not an id (a mapping,
an import path) is refused here, with the reason, whatever
``AGENTIC_ALLOW_INLINE_PROVIDERS`` says.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema, model_validator

from agentic.contracts.base import Frozen
from agentic.ids import SafeId

IMPORT_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
"""``package.module:name``: a module to import and an attribute of it."""
_IMPORT_PATH = re.compile(IMPORT_PATH)


def _import_path(value: str) -> str:
    if not _IMPORT_PATH.fullmatch(value):
        raise ValueError("must be package.module:name (a module to import, a name in it)")
    return value


ImportPath = Annotated[
    str,
    AfterValidator(_import_path),
    WithJsonSchema({"type": "string", "pattern": IMPORT_PATH}),
]
_CLASS_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"

CODE_BY_ID = (
    "name a tool or guardrail of the catalog by id: its Python import path lives only in "
    "the tools/ or guardrails/ catalog of the process that runs the step, and code is never "
    "defined in a workflow, a submit or a step (not even with AGENTIC_ALLOW_INLINE_PROVIDERS)"
)


def _tool_id(value: Any) -> Any:
    """A tool reference must be an id: say why a mapping or an import path is refused."""
    if isinstance(value, dict):
        raise ValueError(f"a tool defined inline is refused: {CODE_BY_ID}")
    if isinstance(value, str) and ":" in value:
        raise ValueError(f"an import path is refused here ({value[:60]!r}): {CODE_BY_ID}")
    return value


def refuse_code_fields(data: Any) -> Any:
    """A workflow or task mapping that writes a tool's target (``python``, ``crewai_tools``)
    where only ids belong: refused with the reason, not as a mere unknown field."""
    if isinstance(data, dict):
        for key in ("python", "crewai_tools"):
            if key in data:
                raise ValueError(f"{key!r} is refused here: {CODE_BY_ID}")
    return data


ToolRef = Annotated[SafeId, BeforeValidator(_tool_id)]
"""The id of a ``tools/<id>.yaml`` entry, as a workflow, a task or a step spec names it."""


class RegisteredGuardrail(Frozen):
    """``{registered: <id>}``: the guardrail ``guardrails/<id>.yaml`` of the runner's catalog."""

    registered: SafeId = Field(description="The id of a guardrails/<id>.yaml entry.")


def _guardrail(value: Any) -> Any:
    """A sentence, or a mapping naming a registered guardrail and nothing else."""
    if isinstance(value, dict) and set(value) != {"registered"}:
        other = ", ".join(sorted(str(k) for k in value if k != "registered")) or "nothing"
        raise ValueError(
            f"a guardrail is a sentence or {{registered: <id>}} (got {other}): {CODE_BY_ID}"
        )
    if isinstance(value, dict):
        _tool_id(value["registered"])
    return value


GuardrailRef = Annotated[str | RegisteredGuardrail, BeforeValidator(_guardrail)]
"""A task's guardrail: a sentence (CrewAI's LLM guardrail, judged by the task agent's LLM) or
a registered callable, by id."""


class ToolEntry(Frozen):
    """A Python tool (``<catalog>/tools/<id>.yaml``): exactly one of ``python`` or
    ``crewai_tools``, imported on the process that runs the step, from installed code only.
    """

    id: SafeId
    description: str = Field(
        default="",
        description="What the tool does, told to the model (empty: the callable's docstring, "
        "or the tool class's own description).",
    )
    planner_hint: str | None = None
    good_for: str | list[str] | None = Field(
        default=None, description="When to use the tool, shown to the planner."
    )
    required_env: list[Annotated[str, Field(pattern=_ENV_NAME)]] = Field(
        default_factory=list,
        description="Environment variables the tool needs where the step runs.",
    )
    python: ImportPath | None = Field(
        default=None,
        description="`package.module:name`: a function, a crewai BaseTool subclass or a "
        "BaseTool instance.",
    )
    crewai_tools: str | None = Field(
        default=None,
        pattern=_CLASS_NAME,
        description="A class of the `crewai_tools` package (`pip install crewai-tools`).",
    )
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of the class's constructor; string values may hold "
        "${VAR} placeholders, expanded where the step runs.",
    )

    @model_validator(mode="after")
    def _exactly_one_target(self) -> ToolEntry:
        if (self.python is None) == (self.crewai_tools is None):
            raise ValueError("exactly one of 'python' or 'crewai_tools' is required")
        return self


class GuardrailEntry(Frozen):
    """A registered guardrail (``<catalog>/guardrails/<id>.yaml``): a callable taking
    CrewAI's ``TaskOutput`` and returning ``(passed, result or feedback)``."""

    id: SafeId
    description: str = ""
    python: ImportPath = Field(description="`package.module:name` of the callable.")
