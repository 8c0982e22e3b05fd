"""Structured output: a task's ``output_schema`` in CrewAI terms (docs/runtime.md,
"Structured output").

A task with an ``output_schema`` gets three things from :func:`task_options`, all of them
CrewAI's documented ``Task`` fields:

* ``output_json``: :func:`answer_model`, a pydantic model that *is* the schema (its
  ``model_json_schema()`` returns it) and takes any JSON object. CrewAI appends the schema
  to the task's prompt ("Format your final answer according to the following OpenAPI
  schema"), and a model server with native structured output (OpenAI, on a task without
  tools) is asked for it; the answer is never rejected by the model itself, only by
  the guardrail below, which can give the agent feedback.
* ``guardrails``: :meth:`SchemaGuardrail.check` first, then the task's own guardrail if it
  has one. It reads the answer as JSON (:func:`parse_answer`), validates it against the
  schema with ``jsonschema`` and hands CrewAI the JSON text, written canonically
  (:func:`canonical`). An answer that does not match fails the guardrail: CrewAI runs the
  agent again with the problem as feedback (its retry-with-feedback, one more model call
  per retry, ``guardrail_max_retries`` times, CrewAI's default 3) and the last failure
  raises :data:`ERROR_TYPE`, a retryable failure of the attempt.
* ``converter_cls``: :class:`LocalConverter`. CrewAI converts every answer of a task with
  ``output_json`` to the model, and its own converter asks the LLM to rewrite text that
  is not JSON (a model call the script or the bill did not plan). This one parses
  locally, never calls the model: what it cannot parse stays text, and the guardrail
  says why.

The step runtimes read the final answer with :func:`final_answer`, which checks it once
more (a guardrail of the task's own, after the schema's, may have changed it).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from crewai import TaskOutput
from crewai.utilities.converter import Converter, ConverterError
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import DEFAULT_REF_TEMPLATE, GenerateJsonSchema, JsonSchemaMode

from agentic.contracts.output_schema import validator
from agentic.errors import FatalStepFailure, RetryableStepFailure

ERROR_TYPE = "OutputSchemaError"
"""``StepResult.error.type`` of an answer that does not match its task's output_schema."""
MAX_PROBLEM_CHARS = 500
_FENCE = re.compile(r"^(`{3,}|~{3,})[^\n]*\n(.*)\n\1\s*$", re.DOTALL)
_NAME = re.compile(r"[^A-Za-z0-9_-]")


class AnswerMismatch(ValueError):
    """The answer is not a JSON object matching the schema; the message says why, in
    words the agent gets as feedback."""


class AnswerObject(BaseModel):
    """Any JSON object, kept as it is; its JSON Schema is the task's ``output_schema``."""

    model_config = ConfigDict(extra="allow")
    answer_schema: ClassVar[dict[str, Any]] = {"type": "object"}

    @classmethod
    def model_json_schema(
        cls,
        by_alias: bool = True,
        ref_template: str = DEFAULT_REF_TEMPLATE,
        schema_generator: type[GenerateJsonSchema] = GenerateJsonSchema,
        mode: JsonSchemaMode = "validation",
        **options: Any,
    ) -> dict[str, Any]:
        """The task's schema as written: what CrewAI shows the agent and what a model
        server with native structured output is asked for."""
        return copy.deepcopy(cls.answer_schema)


def answer_model(schema: Mapping[str, Any], step_id: str) -> type[AnswerObject]:
    """The ``output_json`` model of a task: named after the step (model servers want
    ``[A-Za-z0-9_-]`` names), its JSON Schema ``schema``."""
    name = _NAME.sub("_", step_id)
    attributes = {"answer_schema": dict(schema), "__module__": __name__}
    return type(name, (AnswerObject,), attributes)


def parse_answer(text: str) -> dict[str, Any]:
    """The JSON object an answer holds.

    The whole answer is read as JSON, after removing a code fence around all of it
    (```` ```json … ``` ````); failing that, the text from its first ``{`` to its last ``}``
    (what CrewAI's own conversion tries), so that a sentence before or after the object
    does not lose it. ``NaN`` and ``Infinity`` are refused (not JSON).

    Raises:
        AnswerMismatch: no JSON object could be read.
    """
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(2).strip()
    try:
        value = _loads(stripped)
    except ValueError as exc:
        start, end = stripped.find("{"), stripped.rfind("}")
        if start == -1 or end <= start:
            raise AnswerMismatch(f"the answer is not JSON ({exc})") from exc
        try:
            value = _loads(stripped[start : end + 1])
        except ValueError:
            raise AnswerMismatch(f"the answer is not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise AnswerMismatch(f"the answer is JSON but not an object (a {_json_type(value)})")
    return value


def canonical(value: Mapping[str, Any]) -> str:
    """The JSON text of an answer, as stored and passed on: keys in the order the model
    wrote them, ``", "`` and ``": "`` separators, non-ASCII characters kept."""
    return json.dumps(value, ensure_ascii=False)


class SchemaCheck:
    """Validates answers against one schema; references resolve only inside it."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self._validator = validator(dict(schema))

    def answer(self, text: str) -> dict[str, Any]:
        """The JSON object ``text`` holds, if it matches the schema.

        Raises:
            AnswerMismatch: it is not JSON, not an object, or does not match (the message
                names the place in the object and the rule).
            FatalStepFailure: the schema has a reference that cannot be resolved.
        """
        from jsonschema.exceptions import best_match
        from referencing.exceptions import Unresolvable

        value = parse_answer(text)
        try:
            error = best_match(self._validator.iter_errors(value))
        except Unresolvable as exc:
            raise FatalStepFailure(
                f"the task's output_schema has a reference that cannot be resolved: {exc}",
                error_type="OutputSchemaUnresolvable",
            ) from exc
        if error is not None:
            where = "".join(
                f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path
            )
            raise AnswerMismatch(f"at ${where}: {_cut(error.message)}")
        return value


class SchemaGuardrail:
    """The guardrail of a task with an output_schema (a CrewAI function guardrail)."""

    def __init__(self, schema: Mapping[str, Any], step_id: str) -> None:
        self.schema_check = SchemaCheck(schema)
        self.step_id = step_id
        self.retries = 3  # CrewAI's default guardrail_max_retries; bind() sets the task's
        self.failures = 0

    def bind(self, task: Any) -> None:
        """Take the number of retries from the built CrewAI task."""
        self.retries = int(task.guardrail_max_retries)

    def check(self, output: TaskOutput) -> tuple[bool, Any]:
        """CrewAI's guardrail protocol: ``(True, canonical JSON text)``, or ``(False,
        feedback)`` for the agent's next try; the last failure CrewAI allows raises."""
        try:
            value = self.schema_check.answer(output.raw)
        except AnswerMismatch as exc:
            self.failures += 1
            if self.failures > self.retries:
                raise mismatch_failure(self.step_id, exc, retries=self.retries) from exc
            return False, (
                f"Your final answer must be one JSON object matching the JSON Schema of the "
                f"task, and nothing else. Problem: {exc}"
            )
        return True, canonical(value)


def mismatch_failure(step_id: str, problem: Exception, *, retries: int) -> RetryableStepFailure:
    """The failure of an attempt whose answer does not match its schema. Retryable: a
    model's next attempt, a new conversation, may well answer right."""
    after = (
        f" after {retries} retr{'y' if retries == 1 else 'ies'} with feedback" if retries else ""
    )
    return RetryableStepFailure(
        f"step {step_id!r}: the answer does not match the task's output_schema{after}: {problem}",
        step_id=step_id,
        error_type=ERROR_TYPE,
    )


class LocalConverter(Converter):
    """CrewAI's converter for a task with an output_schema, without the model: the
    answer's JSON object, read by :func:`parse_answer`, or nothing (the text stays as it
    is, and the guardrail says what is wrong with it)."""

    def to_json(self, current_attempt: int = 1) -> Any:
        try:
            return parse_answer(self.text)
        except AnswerMismatch:
            # Empty text: CrewAI reads it as "no JSON" (json_dict None). Its own failure
            # value would make it parse the answer itself, and a JSON list there breaks
            # its TaskOutput.
            return ""

    async def ato_json(self, current_attempt: int = 1) -> Any:
        return self.to_json(current_attempt)

    def to_pydantic(self, current_attempt: int = 1) -> BaseModel:
        try:
            return self.model.model_validate(parse_answer(self.text))
        except AnswerMismatch as exc:
            raise ConverterError(str(exc)) from exc

    async def ato_pydantic(self, current_attempt: int = 1) -> BaseModel:
        return self.to_pydantic(current_attempt)


def task_options(
    schema: Mapping[str, Any], step_id: str, options: Mapping[str, Any]
) -> tuple[dict[str, Any], SchemaGuardrail]:
    """``options`` of a CrewAI ``Task`` for a task with ``schema`` (see the module
    docstring), and its guardrail (:meth:`SchemaGuardrail.bind` it to the built task).

    CrewAI ignores ``guardrail`` once ``guardrails`` is set: a guardrail the task has of
    its own joins the list, after the schema's, so it sees the answer as checked JSON
    (``output.raw`` the JSON text, ``output.json_dict`` the object).
    """
    merged = dict(options)
    own = merged.pop("guardrails", None) or []
    own = list(own) if isinstance(own, (list, tuple)) else [own]
    single = merged.pop("guardrail", None)
    if single is not None:
        own.append(single)
    guardrail = SchemaGuardrail(schema, step_id)
    merged.update(
        output_json=answer_model(schema, step_id),
        converter_cls=LocalConverter,
        guardrails=[guardrail.check, *own],
    )
    return merged, guardrail


def final_answer(
    raw: str, schema: Mapping[str, Any] | None, step_id: str
) -> tuple[str, dict[str, Any] | None]:
    """A finished task's output and its JSON: ``(raw, None)`` without a schema, else the
    canonical JSON text and the object.

    Raises:
        RetryableStepFailure: the answer does not match ``schema`` (:data:`ERROR_TYPE`).
    """
    if schema is None:
        return raw, None
    try:
        value = SchemaCheck(schema).answer(raw)
    except AnswerMismatch as exc:
        raise mismatch_failure(step_id, exc, retries=0) from exc
    return canonical(value), value


def _loads(text: str) -> Any:
    return json.loads(text, strict=False, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_PROBLEM_CHARS else text[: MAX_PROBLEM_CHARS - 1] + "…"
