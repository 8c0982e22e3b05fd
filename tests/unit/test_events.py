"""Event payloads: what each event type carries in ``data``, read back as typed models."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest

from agentic.contracts import (
    EVENT_DATA,
    AgentProvider,
    CancelledData,
    EventType,
    FailedData,
    RunEvent,
    ScriptedScript,
    StepError,
    StepFailedData,
    StepResult,
    StepRetryingData,
    StepSpec,
    StepSucceededData,
    SucceededData,
    TaskConfig,
    TaskText,
    Timing,
    WorkflowConfig,
    end_details,
    end_payload,
    payload_of,
    payload_or_none,
    step_reused,
)
from agentic.coordinator import Command, Emit, RunState
from agentic.errors import DecodeError
from agentic.settings import Settings
from agentic.store import open_store

WORKER = {"host": "worker-1", "pid": 4242}
ERROR = {"type": "RateLimit", "message": "429 too many requests", "retryable": True}

# What each producer puts in ``data`` today, by event type (the wire format).
SENT: list[tuple[EventType, dict[str, Any]]] = [
    ("requested", {}),
    ("planned", {"workflow": "demo", "steps": ["research", "write"]}),  # coordinator
    ("step_ready", {"prior_steps": ["research"]}),  # coordinator
    ("step_started", {}),  # a local backend
    ("step_started", {"worker": WORKER, "step_pid": 77, "delivery": 1, "pool": "default"}),
    ("step_started", {"worker": WORKER, "step_pid": None, "delivery": 2, "pool": "gpu"}),
    ("step_progress", {"message": "half way"}),
    ("step_succeeded", {"output_chars": 120}),  # coordinator
    ("step_succeeded", {"reused": True}),  # coordinator, a replay
    ("step_succeeded", {"output_chars": 120, "worker": WORKER}),  # worker
    ("step_failed", {"error": ERROR, "will_retry": True}),  # coordinator
    ("step_failed", {"error": ERROR, "worker": WORKER}),  # worker
    ("step_succeeded", {"output_chars": 120, "worker": WORKER, "duration_s": 1.25}),  # worker
    ("step_failed", {"error": ERROR, "will_retry": True, "duration_s": 0.5}),  # a local driver
    ("step_retrying", {"delay_s": 1.75}),
    ("succeeded", {"output": "the article"}),
    ("succeeded", {"output": "the art", "output_truncated": True}),  # cut to fit a message
    ("failed", {"error": "step 'write' failed after 3 attempts"}),
    ("cancelled", {"error": "cancelled by request"}),
]


def event(type_: EventType, data: dict[str, Any], *, seq: int = 3) -> RunEvent:
    return RunEvent(run_id="run-events-1", seq=seq, type=type_, step_id="write", data=data)


def test_every_event_type_has_exactly_one_payload_model() -> None:
    assert set(EVENT_DATA) == set(get_args(EventType))
    assert all(model.type == type_ for type_, model in EVENT_DATA.items())


@pytest.mark.parametrize(("type_", "data"), SENT)
def test_what_producers_send_reads_back_as_its_model_and_writes_back_unchanged(
    type_: EventType, data: dict[str, Any]
) -> None:
    payload = payload_of(event(type_, data))

    assert isinstance(payload, EVENT_DATA[type_])
    assert payload.as_data() == data


@pytest.mark.parametrize(("type_", "data"), SENT)
def test_a_key_from_a_newer_producer_is_ignored(type_: EventType, data: dict[str, Any]) -> None:
    payload = payload_of(event(type_, {**data, "added_later": {"any": "thing"}}))

    assert payload.as_data() == data


def test_a_key_a_newer_producer_adds_to_an_error_is_ignored_too() -> None:
    payload = payload_of(event("step_failed", {"error": {**ERROR, "trace_id": "abc"}}))

    assert isinstance(payload, StepFailedData)
    assert payload.error == StepError(**ERROR)


@pytest.mark.parametrize(
    ("type_", "data", "field"),
    [
        ("step_retrying", {"delay_s": "2"}, "delay_s"),
        ("step_retrying", {}, "delay_s"),
        ("step_failed", {"error": ERROR, "will_retry": 1}, "will_retry"),
        ("step_failed", {"error": {**ERROR, "retryable": "true"}}, "error.retryable"),
        ("step_failed", {"will_retry": False}, "error"),
        ("step_succeeded", {"reused": "yes"}, "reused"),
        ("step_succeeded", {"output_chars": "120"}, "output_chars"),
        ("step_started", {"worker": {"host": "h", "pid": "1"}}, "worker.pid"),
        ("planned", {"workflow": "demo", "steps": "research"}, "steps"),
        ("succeeded", {"output": 42}, "output"),
        ("cancelled", {"error": None}, "error"),
    ],
)
def test_a_known_key_of_the_wrong_type_is_refused_with_the_key_and_the_raw_data(
    type_: EventType, data: dict[str, Any], field: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        payload_of(event(type_, data))

    message = str(caught.value)
    assert f"invalid data of a {type_} event of run run-events-1 (seq 3): {field}:" in message
    assert caught.value.raw.startswith(b"{")


def test_a_reader_that_only_shows_events_gets_none_and_a_warning_for_bad_data(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="agentic.contracts.events"):
        assert payload_or_none(event("step_retrying", {"delay_s": "soon"})) is None
    assert "delay_s" in caplog.text


def test_producers_build_data_with_only_the_keys_they_give() -> None:
    assert StepSucceededData(reused=True).as_data() == {"reused": True}
    assert StepSucceededData(output_chars=3).as_data() == {"output_chars": 3}
    failed = StepFailedData(error=StepError(**ERROR), will_retry=False).as_data()
    assert failed == {"error": ERROR, "will_retry": False}
    assert StepFailedData(error=None).as_data() == {"error": None}  # a key given as None stays


def test_the_end_of_a_run_carries_the_output_or_the_error() -> None:
    assert end_payload("succeeded", output="text") == SucceededData(output="text")
    assert end_payload("failed", error="boom") == FailedData(error="boom")
    assert end_payload("cancelled", error="by user") == CancelledData(error="by user")
    assert end_details(event("succeeded", {"output": "text"})) == ("text", None)
    assert end_details(event("cancelled", {"error": "by user"})) == (None, "by user")
    assert end_details(event("step_failed", {"error": ERROR})) == (None, None)


def test_a_reused_step_is_told_from_one_that_ran() -> None:
    assert step_reused(event("step_succeeded", {"reused": True}))
    assert not step_reused(event("step_succeeded", {"output_chars": 3}))
    assert not step_reused(event("step_failed", {"error": ERROR, "reused": True}))


# --- the producers themselves ---------------------------------------------------------------

PROVIDER = AgentProvider(
    id="writer",
    type="scripted",
    role="Writer",
    goal="write",
    backstory="writes",
    script=ScriptedScript(replies=["done"]),
)
WORKFLOW = WorkflowConfig(
    name="wf",
    agent_providers=[PROVIDER],
    tasks=[
        TaskConfig(id=s, agent_provider_id="writer", description=s, expected_output=s)
        for s in ("a", "b", "c")
    ],
    task_sequence=["a", "b", "c"],
)
SETTINGS = Settings(default_retries=1, retry_backoff_base_s=1.0, default_step_timeout_s=30.0)
RETRYABLE = StepError(**ERROR)
FATAL = StepError(type="ToolRefused", message="no", retryable=False)


def emitted(commands: list[Command]) -> list[Emit]:
    return [c for c in commands if isinstance(c, Emit)]


def coordinator_emits() -> list[Emit]:
    """Every kind of event the coordinator's state machine emits."""
    reused = StepResult(run_id="old", step_id="a", attempt=1, status="succeeded", output="A")
    state, out = RunState.start(WORKFLOW, "r1", SETTINGS, reused={"a": reused})
    out += state.on_step_started("b", 1)
    out += state.on_step_failed("b", 1, RETRYABLE)
    out += state.on_retry_due("b")
    out += state.on_step_succeeded("b", 2, "B")
    out += state.on_step_failed("c", 1, FATAL)
    cancelled, more = RunState.start(WORKFLOW, "r2", SETTINGS)
    more += cancelled.on_cancel("stop")
    succeeded, last = RunState.start(WORKFLOW, "r3", SETTINGS)
    for step in ("a", "b", "c"):
        last += succeeded.on_step_succeeded(step, 1, step.upper())
    return emitted(out + more + last)


def test_every_event_the_coordinator_emits_reads_back_unchanged() -> None:
    emits = coordinator_emits()
    assert {e.type for e in emits} == {
        "step_ready", "step_started", "step_succeeded", "step_failed", "step_retrying",
        "succeeded", "failed", "cancelled",
    }  # fmt: skip
    for emit in emits:
        payload = payload_of(event(emit.type, emit.data))
        assert payload.as_data() == emit.data, emit


def test_the_coordinator_says_whether_a_failed_step_is_retried_and_after_how_long() -> None:
    by_type = {e.type: e.data for e in coordinator_emits()}
    retrying = payload_of(event("step_retrying", by_type["step_retrying"]))

    assert isinstance(retrying, StepRetryingData) and retrying.delay_s > 0
    assert set(by_type["step_failed"]) == {"error", "will_retry"}


async def test_a_worker_reports_its_steps_with_the_keys_it_always_sent() -> None:
    from services.worker.service import WorkerContext

    published: list[tuple[str, dict[str, Any]]] = []

    class Timeline:
        def forget(self, run_id: str) -> None:
            pass

        async def publish(self, run_id: str, type_: str, **fields: Any) -> None:
            published.append((type_, fields["data"]))

    context = WorkerContext(
        Settings(),
        pool="default",
        burst=True,
        js=None,  # type: ignore[arg-type]
        stopping=asyncio.Event(),
        store=open_store("memory://events-worker"),
        gate=None,  # type: ignore[arg-type]
    )
    context.timeline = Timeline()  # type: ignore[assignment]
    ok = StepResult(run_id="r", step_id="s", attempt=1, status="succeeded", output="four")
    failed = StepResult(run_id="r", step_id="s", attempt=2, status="failed", error=FATAL)
    spec = StepSpec(
        run_id="r",
        step_id="s",
        step_index=0,
        attempt=1,
        workflow_name="wf",
        topic="t",
        task=TaskText(description="d", expected_output="e"),
        agent_provider=PROVIDER.model_dump(mode="json"),
        store_url="memory://events-worker",
    )

    await context.started(spec, delivery=1, step_pid=99)
    await context.report(ok)
    await context.report(failed)

    this_worker = {"host": socket.gethostname(), "pid": os.getpid()}
    assert published == [
        ("step_started", {"worker": this_worker, "step_pid": 99, "delivery": 1, "pool": "default"}),
        ("step_succeeded", {"output_chars": 4, "worker": this_worker}),
        ("step_failed", {"error": FATAL.model_dump(mode="json"), "worker": this_worker}),
    ]
    for type_, data in published:
        assert payload_of(event(type_, data)).as_data() == data  # type: ignore[arg-type]


async def test_a_worker_says_how_long_the_attempt_ran_as_its_result_records_it() -> None:
    from services.worker.service import WorkerContext

    published: list[dict[str, Any]] = []

    class Timeline:
        async def publish(self, run_id: str, type_: str, **fields: Any) -> None:
            published.append(fields["data"])

    context = WorkerContext(
        Settings(),
        pool="default",
        burst=True,
        js=None,  # type: ignore[arg-type]
        stopping=asyncio.Event(),
        store=open_store("memory://events-worker-timed"),
        gate=None,  # type: ignore[arg-type]
    )
    context.timeline = Timeline()  # type: ignore[assignment]
    start = datetime(2026, 1, 31, 12, tzinfo=UTC)
    timing = Timing(started_at=start, finished_at=start + timedelta(seconds=2.5))
    ok = StepResult(
        run_id="r", step_id="s", attempt=1, status="succeeded", output="four", timing=timing
    )
    failed = StepResult(
        run_id="r", step_id="s", attempt=2, status="failed", error=FATAL, timing=timing
    )

    await context.report(ok)
    await context.report(failed)

    assert [data["duration_s"] for data in published] == [2.5, 2.5]
    succeeded = payload_of(event("step_succeeded", published[0]))
    assert isinstance(succeeded, StepSucceededData) and succeeded.duration_s == 2.5


def test_a_final_output_too_long_for_a_message_is_cut_and_marked() -> None:
    from services.coordinator.effects import _bounded

    data = _bounded({"output": "x" * 1000}, max_bytes=200)
    payload = payload_of(event("succeeded", data))

    assert isinstance(payload, SucceededData)
    assert payload.output_truncated and len(payload.output) == 100
