"""A task's output_schema: which schemas a catalog, a request and a spec accept, and how an
answer is read as JSON (docs/runtime.md, "Structured output")."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from referencing.exceptions import Unresolvable

from agentic.catalog import load_catalog, load_workflow
from agentic.contracts import StepResult, TaskConfig, TaskText
from agentic.contracts.output_schema import MAX_SCHEMA_BYTES, check_output_schema, validator
from agentic.materialize import materialize, with_prior_outputs
from agentic.settings import Settings
from tests.factories import (
    make_catalog,
    only_problem,
    step_spec,
    task_yaml,
    workflow,
    workflow_yaml,
)
from tests.fixtures.structured_output import CATALOG, WORKFLOW

with warnings.catch_warnings():
    warnings.simplefilter("ignore", ImportWarning)  # CrewAI's own package layout
    from agentic.runtime.structured import AnswerMismatch, canonical, parse_answer

pytestmark = pytest.mark.filterwarnings("ignore::ImportWarning")

BRIEF = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "n": {"type": "integer"}},
    "required": ["title"],
}


def a_task(**fields: Any) -> TaskConfig:
    return TaskConfig.model_validate(
        {"id": "brief", "agent_provider_id": "a", "description": "d", "expected_output": "e"}
        | fields
    )


def schema_error(schema: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        a_task(output_schema=schema)
    (error,) = caught.value.errors()
    assert error["loc"] == ("output_schema",)
    return str(error["msg"])


def test_a_task_takes_a_json_schema_of_an_object_as_it_is_written() -> None:
    schema = {**BRIEF, "$defs": {"t": {"type": "string"}}, "$schema": BRIEF_DRAFT_7}
    assert a_task(output_schema=schema).output_schema == schema
    assert a_task().output_schema is None


BRIEF_DRAFT_7 = "http://json-schema.org/draft-07/schema#"


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "array"}, "the top level must be an object schema (type: object)"),
        ({"properties": {}}, "the top level must be an object schema"),
        (
            {"type": "object", "properties": {"a": {"type": "text"}}},
            "not a valid JSON Schema at properties/a/type",
        ),
        ({"type": "object", "required": "a"}, "not a valid JSON Schema at required"),
        (
            {"type": "object", "$schema": "https://example.com/my-draft"},
            "$schema 'https://example.com/my-draft' is not a JSON Schema draft agentic knows",
        ),
        ([{"type": "object"}], "Input should be a valid dictionary"),
        (
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/gone"}}},
            "$ref '#/$defs/gone' at #/properties/a points to nothing in the schema",
        ),
    ],
)
def test_a_schema_agentic_cannot_use_is_refused_with_the_reason(schema: Any, expected: str) -> None:
    assert expected in schema_error(schema)


def test_a_schema_too_big_or_too_deep_is_refused() -> None:
    big = {"type": "object", "description": "x" * MAX_SCHEMA_BYTES}
    assert "over the limit of 65536" in schema_error(big)
    deep: dict[str, Any] = {"type": "object"}
    for _ in range(40):
        deep = {"type": "object", "properties": {"a": deep}}
    assert "nested more than 32 levels deep" in schema_error(deep)


class _Counting(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = json.dumps({"type": "string"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def schema_server() -> Iterator[str]:
    """A server that would answer a fetched ``$ref``; ``_Counting.hits`` records any."""
    _Counting.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_reference_to_a_url_is_refused_everywhere_and_nothing_is_fetched(
    tmp_path: Path, schema_server: str
) -> None:
    hostile = {
        "type": "object",
        "properties": {"a": {"$ref": f"{schema_server}/evil.json"}},
        "required": ["a"],
    }
    message = schema_error(hostile)
    assert (
        f"$ref '{schema_server}/evil.json' at #/properties/a points outside the schema" in message
    )

    # A step spec is untrusted input too: its task text checks the schema again.
    with pytest.raises(ValidationError, match="points outside the schema"):
        step_spec(task={"description": "d", "expected_output": "e", "output_schema": hostile})
    with pytest.raises(ValidationError, match="points outside the schema"):
        TaskText(description="d", expected_output="e", output_schema=hostile)

    # Were one to slip past, the validator answers without fetching it.
    sneaky = {"type": "object", "properties": {"a": {"$ref": f"{schema_server}/evil.json"}}}
    with pytest.raises(Unresolvable, match=r"evil\.json"):
        list(validator(sneaky).iter_errors({"a": 1}))
    assert _Counting.hits == []


def test_a_reference_inside_the_schema_is_followed() -> None:
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"$ref": "#/$defs/tag"}}},
        "$defs": {"tag": {"type": "string", "minLength": 1}},
    }
    check_output_schema(schema)
    errors = [e.message for e in validator(schema).iter_errors({"tags": ["a", ""]})]
    assert errors == ["'' should be non-empty"]


def test_a_catalog_file_with_a_bad_schema_names_the_file_and_the_field(tmp_path: Path) -> None:
    tasks = task_yaml("one", output_schema="{type: array, items: {type: string}}")
    root = make_catalog(tmp_path, {"workflows/flow.yaml": workflow_yaml(tasks)})

    problem = only_problem(root)
    assert problem.file.endswith("workflows/flow.yaml")
    assert problem.field == "workflow.tasks[0].output_schema"
    assert "the top level must be an object schema (type: object)" in problem.message


def test_the_fixture_workflow_loads_and_its_specs_carry_each_schema() -> None:
    wf = load_workflow(WORKFLOW, load_catalog([CATALOG]))
    specs = {
        s.step_id: s
        for s in materialize(
            wf, run_id="r", inputs={}, store_url="memory://x", settings=Settings(_env_file=None)
        )
    }
    assert specs["brief"].task.output_schema == wf.task("brief").output_schema
    assert specs["verdict"].task.output_schema == wf.task("verdict").output_schema
    # Merging earlier outputs into the description keeps the schema.
    merged = with_prior_outputs(specs["verdict"], {"brief": '{"title": "t"}'}, max_chars=100)
    assert merged.task.output_schema == wf.task("verdict").output_schema


def test_a_task_without_a_schema_is_written_as_before() -> None:
    plain = materialize(
        workflow(a_task(id="only", agent_provider_id="scripted")),
        run_id="r",
        inputs={},
        store_url="memory://x",
        settings=Settings(_env_file=None),
    )[0]
    assert "output_schema" not in plain.model_dump_json()
    result = StepResult(run_id="r", step_id="s", attempt=1, status="succeeded", output="text")
    assert "output_json" not in result.model_dump_json()
    structured = result.model_copy(update={"output_json": {"a": 1}})
    assert StepResult.model_validate_json(structured.model_dump_json()).output_json == {"a": 1}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('{"title": "t", "n": 2}', {"title": "t", "n": 2}),
        ('  ```json\n{"title": "é"}\n```  ', {"title": "é"}),
        ('Here it is: {"title": "t"} -- done.', {"title": "t"}),
        ('{"title": "line one\nline two"}', {"title": "line one\nline two"}),
    ],
)
def test_an_answer_is_read_as_the_json_object_it_holds(answer: str, expected: Any) -> None:
    assert parse_answer(answer) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("A title about queues.", "the answer is not JSON (Expecting value"),
        ('["a", "b"]', "the answer is JSON but not an object (a list)"),
        ('{"n": NaN}', "the answer is not JSON (NaN is not JSON)"),
        ('{"title": "t"', "the answer is not JSON"),
    ],
)
def test_an_answer_that_holds_no_json_object_says_why(answer: str, expected: str) -> None:
    with pytest.raises(AnswerMismatch) as caught:
        parse_answer(answer)
    assert str(caught.value).startswith(expected)


def test_the_json_text_keeps_the_models_key_order_and_non_ascii_characters() -> None:
    assert canonical({"title": "Café", "n": 1, "a": [True, None]}) == (
        '{"title": "Café", "n": 1, "a": [true, null]}'
    )
