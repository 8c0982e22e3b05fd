"""Reading one catalog YAML file into a model, with every problem named by file and field.

YAML is loaded by :mod:`agentic.catalog.safe_yaml`: a safe loader that also refuses
duplicate keys and documents whose aliases expand to too many nodes (an alias bomb), each
refusal naming the file and the line. Pydantic errors become :class:`Problem` lines such as
``config/workflows/demo.yaml: workflow.tasks[0].agent_provider_id: required field is missing``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from agentic import contracts
from agentic.catalog.origin import adapt, did_you_mean
from agentic.catalog.safe_yaml import YAMLTooLargeError, load_yaml
from agentic.contracts import (
    AgentProvider,
    GuardrailEntry,
    MCPProvider,
    ToolEntry,
    WorkflowDefinition,
)
from agentic.errors import CatalogError
from agentic.ids import SAFE_ID_PATTERN, is_safe_id

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 1_000_000
"""Catalog files are small; a bigger file is a mistake (or an attack on the loader)."""

KINDS = ("agent_providers", "mcp_providers", "tools", "guardrails", "workflows")
CODE_KINDS = ("tools", "guardrails")
"""The kinds that name Python code: read only from the catalog of the process that runs it."""
MODELS: dict[str, type[BaseModel]] = {
    "agent_providers": AgentProvider,
    "mcp_providers": MCPProvider,
    "tools": ToolEntry,
    "guardrails": GuardrailEntry,
    "workflows": WorkflowDefinition,
}

# Pydantic puts the member of a union it tried into the error location ("str",
# "ScriptedToolCall", "function-after[_validate(), str]"). These are not fields.
_MODEL_NAMES = frozenset(name for name in contracts.__all__ if name[:1].isupper())


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a catalog: the file, the field (dotted path) and what is wrong."""

    file: str
    field: str | None
    message: str

    def __str__(self) -> str:
        if self.field:
            return f"{self.file}: {self.field}: {self.message}"
        return f"{self.file}: {self.message}"

    def to_error(self) -> CatalogError:
        """The same problem as an exception."""
        return CatalogError(self.message, file=self.file, field=self.field)

    @classmethod
    def from_error(cls, exc: CatalogError) -> Problem:
        """The problem an exception describes."""
        return cls(exc.file or "<input>", exc.field, exc.reason)


def read_yaml(path: Path, shown: str | None = None) -> Any:
    """Load one YAML document safely.

    Args:
        path: The file.
        shown: How the file is named in messages (defaults to ``str(path)``).

    Raises:
        CatalogError: unreadable, too big, malformed YAML, or YAML whose aliases expand to
            more than :data:`~agentic.catalog.safe_yaml.MAX_EXPANDED_NODES` nodes (the field
            names the line).
    """
    shown = shown or str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CatalogError(f"file is {size} bytes; the limit is {MAX_FILE_BYTES}", file=shown)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"cannot read the file: {exc}", file=shown) from exc
    try:
        return load_yaml(text)
    except yaml.YAMLError as exc:
        raise _yaml_problem(exc, shown) from exc


def _yaml_problem(exc: yaml.YAMLError, shown: str) -> CatalogError:
    if not isinstance(exc, yaml.MarkedYAMLError):
        return CatalogError(f"malformed YAML: {exc}", file=shown)
    mark = exc.problem_mark or exc.context_mark
    line = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else None
    if isinstance(exc, YAMLTooLargeError):  # well-formed, just too big: not "malformed"
        return CatalogError(str(exc.problem), file=shown, field=line)
    reason = ": ".join(str(p) for p in (exc.context, exc.problem) if p)
    return CatalogError(f"malformed YAML: {reason or exc}", file=shown, field=line)


def parse_entry(
    kind: str, data: Any, file: str, warnings: list[Problem] | None = None
) -> tuple[BaseModel | None, list[Problem]]:
    """Validate the content of one catalog file of ``kind`` (one of :data:`KINDS`).

    The original tool's fields are read first (:mod:`agentic.catalog.origin`): legacy keys
    become ours, fields without effect are dropped with a warning.

    Args:
        warnings: Where the file's warnings go (default: logged).

    Returns:
        The model, or ``None`` and every problem found.
    """
    if data is None:
        return None, [Problem(file, None, "the file is empty: expected a mapping of fields")]
    if not isinstance(data, dict):
        got = type(data).__name__
        return None, [Problem(file, None, f"expected a mapping of fields, got a {got}")]
    data, adapted = adapt(kind, data)
    found = [Problem(file, field, message) for field, message in adapted.warnings]
    if warnings is None:
        for warning in found:
            logger.warning("%s", warning)
    else:
        warnings += found
    try:
        model = MODELS[kind].model_validate(data)
    except ValidationError as exc:
        problems = [
            Problem(file, adapted.shown(p.field), p.message)
            for p in validation_problems(exc, data, file, MODELS[kind])
        ]
        return None, [Problem(file, f, m) for f, m in adapted.problems] + problems
    if adapted.problems:
        return None, [Problem(file, f, m) for f, m in adapted.problems]
    if isinstance(model, AgentProvider):
        issue = pool_issue(model.pool, "pool")
        if issue is not None:
            return None, [Problem(file, *issue)]
    return model, []


def raw_id(kind: str, data: Any) -> str | None:
    """The id a (possibly invalid) file meant to define, if it says."""
    if not isinstance(data, dict):
        return None
    if kind == "workflows":
        body = data.get("workflow")
        value = body.get("name") if isinstance(body, dict) else None
    else:
        value = data.get("id")
    return value if isinstance(value, str) else None


def entry_id(entry: BaseModel) -> str:
    """The id of a parsed catalog entry (a workflow's name)."""
    if isinstance(entry, WorkflowDefinition):
        return entry.workflow.name
    return str(entry.id)  # type: ignore[attr-defined]


def id_field(kind: str) -> str:
    """Where a file of ``kind`` names its id."""
    return "workflow.name" if kind == "workflows" else "id"


def pool_issue(pool: str | None, field: str) -> tuple[str, str] | None:
    """A pool becomes a NATS subject token, so it must be a safe id."""
    if pool is None or is_safe_id(pool):
        return None
    return field, f"pool {pool!r} must match {SAFE_ID_PATTERN} and not contain '..'"


def format_loc(loc: tuple[Any, ...] | list[Any]) -> str | None:
    """``("workflow", "tasks", 0, "id")`` -> ``workflow.tasks[0].id``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def validation_problems(
    exc: ValidationError, raw: Any, file: str, model: type[BaseModel] | None = None
) -> list[Problem]:
    """Every pydantic error as a :class:`Problem`, without the noise of union members.

    Args:
        model: The model of the whole file: an unknown field then names the closest known
            one ("did you mean").
    """
    problems: list[Problem] = []
    for err in exc.errors():
        found = _clean_error(err, raw)
        if found is None:
            continue
        loc, message = found
        if err.get("type") == "extra_forbidden" and model is not None:
            close = did_you_mean(model, loc)
            message += f" (did you mean {close!r}?)" if close else ""
        problem = Problem(file, format_loc(loc), message)
        if problem not in problems:
            problems.append(problem)
    return problems


def _clean_error(err: Any, raw: Any) -> tuple[list[Any], str] | None:
    """Drop union-member names from the location; ``None`` for another member's error."""
    loc = list(err["loc"])
    while (tag_at := next((i for i, p in enumerate(loc) if _is_union_tag(p)), None)) is not None:
        # Keep only the errors of the union member that matches what the user wrote: a
        # string is an id (or a scripted reply), a mapping is an inline entry (a tool call).
        item = _walk(raw, loc[:tag_at])
        tag = loc[tag_at]
        wants_str = tag == "str" or str(tag).endswith(", str]")
        if not isinstance(item, str | dict):
            return loc[:tag_at], "expected a string or a mapping"
        if isinstance(item, str) != wants_str:
            return None
        del loc[tag_at]
    return loc, _message(err)


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part == "str" or part in _MODEL_NAMES)


def _walk(data: Any, path: list[Any]) -> Any:
    for part in path:
        in_dict = isinstance(data, dict) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if not (in_dict or in_list):
            return None
        data = data[part]
    return data


def _message(err: Any) -> str:
    kind = err.get("type")
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    value = err.get("input")
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        shown = repr(value) if len(repr(value)) <= 42 else repr(value)[:40] + "…"
        msg += f" (got {shown})"
    return msg
