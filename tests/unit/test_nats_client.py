"""The nats client's pure parts: replies of the coordinator, a run record folded from events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentic.backends.nats import run_request
from agentic.backends.nats.followed import record_from_events
from agentic.bus.requests import parse_reply
from agentic.contracts import RunEvent, RunRecord, RunRequest, StepState
from agentic.errors import BusError
from tests.factories import REPO


def make_record() -> RunRecord:
    from agentic.catalog import load_catalog, load_workflow

    catalog = load_catalog([REPO / "config"])
    workflow = load_workflow("demo", catalog)
    return RunRecord(
        run_id="run.1",
        request=RunRequest(workflow_ref="demo", inputs={"topic": "t"}, labels={"team": "a"}),
        workflow=workflow,
        inputs={"topic": "t"},
        backend="nats",
        labels={"team": "a"},
        steps=[StepState(step_id=s) for s in workflow.task_sequence],
    )


def event(seq: int, type_: str, step: str | None = None, attempt: int | None = None, **data):
    ts = datetime(2026, 1, 1, 0, 0, seq, tzinfo=UTC)
    return RunEvent(run_id="run.1", seq=seq, type=type_, ts=ts, step_id=step, attempt=attempt,
                    data=data)  # fmt: skip


def test_a_run_id_reply_is_an_acceptance() -> None:
    reply = parse_reply(b'{"run_id": "run.1"}')
    assert reply.ok and reply.run_id == "run.1" and not reply.unknown_run


def test_an_error_reply_carries_its_message_and_says_whether_the_run_is_unknown() -> None:
    unknown = parse_reply(b'{"error": "unknown run \'x\'", "code": "unknown_run"}')
    assert not unknown.ok and unknown.unknown_run and "x" in (unknown.error or "")
    refused = parse_reply(b'{"error": {"type": "ConfigError", "message": "bad workflow"}}')
    assert refused.error == "bad workflow" and refused.code == "ConfigError"
    assert not refused.unknown_run


def test_a_reply_that_is_not_a_json_object_is_a_bus_error() -> None:
    with pytest.raises(BusError, match="not JSON"):
        parse_reply(b"<html>")
    with pytest.raises(BusError, match="not a JSON object"):
        parse_reply(b"[1]")


def test_a_catalog_workflow_is_submitted_by_name_for_the_coordinator_to_resolve() -> None:
    record = make_record()
    request = run_request(record)
    assert request.run_id == "run.1" and request.workflow_ref == "demo"
    assert request.workflow is None and request.goal is None
    assert request.inputs == {"topic": "t"} and request.labels == {"team": "a"}
    assert request.backend == "nats"


def test_a_workflow_file_is_submitted_as_resolved_by_the_client() -> None:
    record = make_record()
    record = record.model_copy(update={"request": RunRequest(workflow=record.workflow)})
    request = run_request(record)
    assert request.run_id == "run.1" and request.workflow == record.workflow
    assert request.workflow_ref is None and request.goal is None


def test_a_succeeded_run_folded_from_events_has_its_output_and_step_states() -> None:
    record = make_record()
    events = [
        event(0, "planned"),
        event(1, "step_ready", "research", 1),
        event(2, "step_started", "research", 1),
        event(3, "step_failed", "research", 1, error={"type": "X", "message": "m"}),
        event(4, "step_retrying", "research", 2),
        event(5, "step_ready", "research", 2),
        event(6, "step_succeeded", "research", 2),
        event(7, "step_succeeded", "write", 1),
        event(8, "step_succeeded", "edit", 1),
        event(9, "succeeded", output="the article"),
    ]
    folded = record_from_events(record, events)
    assert folded.status == "succeeded" and folded.output == "the article"
    assert [(s.step_id, s.status, s.attempt) for s in folded.steps] == [
        ("research", "succeeded", 2),
        ("write", "succeeded", 1),
        ("edit", "succeeded", 1),
    ]
    assert folded.finished_at == events[-1].ts


def test_a_cancelled_run_folded_from_events_cancels_the_running_step_and_skips_the_rest() -> None:
    events = [event(0, "step_started", "research", 1), event(1, "cancelled", error="by user")]
    folded = record_from_events(make_record(), events)
    assert folded.status == "cancelled" and folded.error == "by user"
    assert [s.status for s in folded.steps] == ["cancelled", "skipped", "skipped"]


def test_a_run_with_events_but_no_end_is_running() -> None:
    folded = record_from_events(make_record(), [event(0, "step_ready", "research", 1)])
    assert folded.status == "running" and folded.steps[0].status == "ready"
