"""A task's ``output_schema``: the JSON Schema its answer must match (docs/runtime.md,
"Structured output").

A schema is data that may come from a submitted workflow or a step spec, so it is checked
wherever it is read (a catalog file, a RunRequest, a StepSpec) before anything uses it:

* it is a valid JSON Schema of a draft ``jsonschema`` knows (4, 6, 7, 2019-09, 2020-12;
  without ``$schema``: 2020-12), checked against that draft's meta-schema;
* its top level is an object schema (``type: object``): CrewAI's structured output is a
  JSON object, and so is ``StepResult.output_json``;
* every ``$ref`` (and ``$dynamicRef``, ``$recursiveRef``) points inside the schema itself
  (``#`` or ``#/…``): left alone, ``jsonschema`` would fetch a ``$ref`` to a URL when it
  validates, so a schema could make a worker call any address. :func:`validator` also
  builds its validator on a registry that retrieves nothing, should a reference slip past;
* it is at most :data:`MAX_SCHEMA_BYTES` of JSON and :data:`MAX_SCHEMA_DEPTH` levels deep.

``jsonschema`` is imported when a schema is checked, not when the contracts are.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator

if TYPE_CHECKING:
    from jsonschema.protocols import Validator

MAX_SCHEMA_BYTES = 65_536
MAX_SCHEMA_DEPTH = 32
_REFERENCE_KEYWORDS = ("$ref", "$dynamicRef", "$recursiveRef")
_KNOWN_DRAFTS = "4, 6, 7, 2019-09 and 2020-12"


def check_output_schema(schema: Any) -> dict[str, Any]:
    """``schema`` if it is an output schema agentic accepts (see the module docstring).

    The verdict on a schema is remembered (by its JSON text): a workflow read again and
    again (``run.json``, every spec of a run) is checked once per process.

    Raises:
        ValueError: it is not, saying why (pydantic reports it under the field's name).
    """
    if not isinstance(schema, dict):
        raise ValueError(f"an output schema is a JSON Schema mapping, not {type(schema).__name__}")
    _check_depth(schema)
    try:
        text = json.dumps(schema, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"an output schema must be plain JSON data ({exc})") from exc
    problem = _problem(text)
    if problem is not None:
        raise ValueError(problem)
    return schema


@functools.lru_cache(maxsize=256)
def _problem(text: str) -> str | None:
    """What is wrong with the schema whose JSON is ``text`` (None: nothing)."""
    size = len(text.encode())
    if size > MAX_SCHEMA_BYTES:
        return f"the schema is {size} bytes of JSON, over the limit of {MAX_SCHEMA_BYTES}"
    schema = json.loads(text)
    for where, keyword, ref in _references(schema, "#"):
        if isinstance(ref, str) and not ref.startswith("#"):
            return (
                f"{keyword} {ref!r} at {where} points outside the schema: only references "
                "inside it ('#/$defs/…') are allowed, so that validating never fetches a URL"
            )
        if isinstance(ref, str) and ref.startswith("#/") and not _points_to_something(schema, ref):
            return f"{keyword} {ref!r} at {where} points to nothing in the schema"
    if schema.get("type") != "object":
        return (
            "the top level must be an object schema (type: object): the answer is one JSON "
            "object (wrap a list in a property)"
        )
    from jsonschema.exceptions import best_match

    try:
        cls = _validator_class(schema)
    except ValueError as exc:
        return str(exc)
    error = best_match(cls(cls.META_SCHEMA).iter_errors(schema))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        return f"not a valid JSON Schema at {where}: {error.message}"
    return None


def validator(schema: dict[str, Any]) -> Validator:
    """A validator of answers against ``schema`` (checked by :func:`check_output_schema`)
    that resolves references only inside the schema: its registry retrieves nothing."""
    from jsonschema import FormatChecker
    from referencing import Registry

    cls = _validator_class(schema)
    return cls(schema, registry=Registry(), format_checker=FormatChecker())


def _validator_class(schema: dict[str, Any]) -> Any:
    """The ``jsonschema`` validator of the draft ``$schema`` names (2020-12 without one)."""
    from jsonschema import Draft202012Validator
    from jsonschema.validators import validator_for

    declared = schema.get("$schema")
    if declared is None:
        return Draft202012Validator
    cls = validator_for(schema, default=None)
    if cls is None:
        raise ValueError(
            f"$schema {declared!r} is not a JSON Schema draft agentic knows ({_KNOWN_DRAFTS})"
        )
    return cls


def _points_to_something(schema: dict[str, Any], ref: str) -> bool:
    """Whether the JSON pointer ``ref`` (``#/$defs/tag``) names a part of ``schema``."""
    from urllib.parse import unquote

    node: Any = schema
    for part in ref[2:].split("/"):
        key = unquote(part).replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return False
    return True


def _check_depth(node: Any, depth: int = 0) -> None:
    if depth > MAX_SCHEMA_DEPTH:
        raise ValueError(f"the schema is nested more than {MAX_SCHEMA_DEPTH} levels deep")
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
    for child in children:
        _check_depth(child, depth + 1)


def _references(node: Any, where: str) -> Iterator[tuple[str, str, Any]]:
    """Every reference keyword in ``node`` with the JSON pointer of the object holding it.

    Every mapping counts, data (``enum``, ``default``, ``examples``) included: a reference
    that only looks like one is refused too, which errs on the safe side."""
    if isinstance(node, dict):
        for keyword in _REFERENCE_KEYWORDS:
            if keyword in node:
                yield where, keyword, node[keyword]
        for key, child in node.items():
            yield from _references(child, f"{where}/{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _references(child, f"{where}/{i}")


OutputSchema = Annotated[dict[str, Any], AfterValidator(check_output_schema)]
"""A task's ``output_schema`` wherever a contract carries it (a task, a step's task text)."""
