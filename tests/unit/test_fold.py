"""One fold of run events into run and step states, the same for every reader of events."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest

from agentic.contracts import (
    STEP_STATUS,
    AgentProvider,
    EventType,
    RunEvent,
    RunRecord,
    RunRequest,
    RunView,
    ScriptedScript,
    StepError,
    StepResult,
    StepState,
    StepStatus,
    TaskConfig,
    WorkflowConfig,
    ended_record,
    fold,
    stopped_status,
)
from agentic.contracts.fold import settled
from agentic.coordinator import Command, Emit, RunState
from agentic.settings import Settings

T0 = datetime(2026, 2, 1, 9, 0, 0, tzinfo=UTC)
RUN = "run-fold-1"
RATE_LIMIT = {"type": "RateLimit", "message": "429", "retryable": True}


def event(seq: int, type_: str, step: str | None = None, attempt: int | None = None,
          **data: Any) -> RunEvent:  # fmt: skip
    return RunEvent(
        run_id=RUN, seq=seq, type=type_, step_id=step, attempt=attempt,
        ts=T0 + timedelta(seconds=seq), data=data,
    )  # fmt: skip


def states(view: RunView) -> list[tuple[str, str, int]]:
    return [(s.step_id, s.status, s.attempt) for s in view.steps.values()]


def pending(*steps: str) -> RunView:
    return RunView(run_id=RUN).with_steps(steps)


def test_every_step_event_but_progress_leads_to_one_step_status() -> None:
    step_types = {t for t in get_args(EventType) if t.startswith("step_")}
    assert set(STEP_STATUS) == step_types - {"step_progress"}


@pytest.mark.parametrize(
    ("status", "stopped"),
    [
        ("pending", "skipped"),
        ("ready", "cancelled"),
        ("running", "cancelled"),
        ("retrying", "cancelled"),
        ("succeeded", "succeeded"),
        ("failed", "failed"),
        ("cancelled", "cancelled"),
        ("skipped", "skipped"),
    ],
)
def test_when_a_run_ends_what_was_going_is_cancelled_and_what_never_ran_skipped(
    status: StepStatus, stopped: StepStatus
) -> None:
    assert stopped_status(status) == stopped
    assert set(get_args(StepStatus)) >= {status, stopped}


def test_a_retried_step_keeps_the_failed_attempt_while_it_waits_then_takes_the_next() -> None:
    view = fold(
        [
            event(0, "planned", workflow="wf", steps=["research"]),
            event(1, "step_ready", "research", 1, prior_steps=[]),
            event(2, "step_started", "research", 1),
            event(3, "step_failed", "research", 1, error=RATE_LIMIT, will_retry=True),
            event(4, "step_retrying", "research", 2, delay_s=2.5),
        ],
        pending("research"),
    )
    (step,) = view.steps.values()
    assert (view.status, step.status, step.attempt) == ("running", "retrying", 1)
    assert step.error == StepError(**RATE_LIMIT) and step.retry_delay_s == 2.5
    assert (step.started_at, step.finished_at) == (
        T0 + timedelta(seconds=2),
        T0 + timedelta(seconds=3),
    )

    view = fold(
        [
            event(5, "step_ready", "research", 2, prior_steps=[]),
            event(6, "step_started", "research", 2),
            event(7, "step_succeeded", "research", 2, output_chars=10),
        ],
        view,
    )
    (step,) = view.steps.values()
    assert (step.status, step.attempt, step.error, step.retry_delay_s) == (
        "succeeded",
        2,
        None,
        None,
    )
    assert step.ready_at == T0 + timedelta(seconds=5)  # the second attempt's own clock
    assert (step.finished_at - step.started_at).total_seconds() == 1.0  # type: ignore[operator]


def test_a_reused_step_succeeds_without_running_and_says_from_where() -> None:
    view = fold(
        [
            event(0, "step_succeeded", "research", 1, reused=True, reused_from="run-0"),
            event(1, "step_succeeded", "write", 1, reused=True),
            event(2, "step_ready", "edit", 1, prior_steps=["write"]),
        ],
        pending("research", "write", "edit"),
    )
    research, write, edit = view.steps.values()
    assert (research.status, research.reused, research.reused_from) == ("succeeded", True, "run-0")
    assert (write.reused, write.reused_from, write.started_at) == (True, None, None)
    assert (edit.status, edit.reused) == ("ready", False)


def test_a_cancel_mid_run_cancels_what_was_going_and_skips_what_never_ran() -> None:
    view = fold(
        [
            event(0, "step_succeeded", "a", 1),
            event(1, "step_started", "b", 1),
            event(2, "step_failed", "c", 1, error=RATE_LIMIT, will_retry=True),
            event(3, "step_retrying", "c", 2, delay_s=9.0),
            event(4, "cancelled", error="cancelled by request"),
        ],
        pending("a", "b", "c", "d"),
    )
    assert (view.status, view.error, view.output) == ("cancelled", "cancelled by request", None)
    assert view.finished_at == T0 + timedelta(seconds=4)
    assert states(view) == [
        ("a", "succeeded", 1),
        ("b", "cancelled", 1),
        ("c", "cancelled", 1),
        ("d", "skipped", 0),
    ]
    b, c = view.steps["b"], view.steps["c"]
    assert b.finished_at == T0 + timedelta(seconds=4)  # a running step's clock stops at the end
    assert c.finished_at == T0 + timedelta(seconds=2)  # a waiting step's stopped when it failed


def test_a_failed_run_keeps_its_error_and_its_failed_step() -> None:
    fatal = {"type": "ToolRefused", "message": "no", "retryable": False}
    view = fold(
        [
            event(0, "step_ready", "a", 1, prior_steps=[]),
            event(1, "step_ready", "b", 1, prior_steps=[]),
            event(2, "step_failed", "a", 1, error=fatal, will_retry=False),
            event(3, "failed", "a", error="step 'a' failed after 1 attempt"),
        ],
        pending("a", "b", "c"),
    )
    assert (view.status, view.error) == ("failed", "step 'a' failed after 1 attempt")
    assert states(view) == [("a", "failed", 1), ("b", "cancelled", 1), ("c", "skipped", 0)]
    assert view.steps["a"].error == StepError(**fatal)


def test_a_run_that_ended_takes_no_more_events() -> None:
    ended = fold([event(0, "step_started", "a", 1), event(1, "cancelled", error="stop")])
    late = fold([event(2, "step_succeeded", "a", 1), event(3, "succeeded", output="x")], ended)
    assert late is ended  # the very same view: a reader can tell the event was ignored


def test_news_of_an_earlier_attempt_changes_nothing() -> None:
    view = fold([event(0, "step_started", "a", 2)])
    assert fold([event(1, "step_failed", "a", 1, error=None)], view) is view
    assert states(view) == [("a", "running", 2)]


def test_progress_notes_replace_each_other_and_end_with_the_attempt() -> None:
    view = fold([event(0, "step_started", "a", 1), event(1, "step_progress", "a", 1, note="old")])
    assert view.steps["a"].message == "old"
    view = fold([event(2, "step_progress", "a", 1, message="new")], view)
    assert (view.steps["a"].status, view.steps["a"].message) == ("running", "new")
    view = fold([event(3, "step_succeeded", "a", 1)], view)
    assert view.steps["a"].message == ""


def test_an_event_with_bad_data_still_moves_its_step_but_brings_no_details(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        view = fold([event(0, "step_failed", "a", 1, error="not an object")])
    assert (view.steps["a"].status, view.steps["a"].error) == ("failed", None)
    assert "invalid data of a step_failed event" in caplog.text


# --- the same states as the nats client's record and the progress display expect -----------


def record(steps: list[str], *, status: str = "pending") -> RunRecord:
    return RunRecord(
        run_id=RUN,
        status=status,  # type: ignore[arg-type]
        request=RunRequest(workflow_ref="demo"),
        backend="nats",
        steps=[StepState(step_id=s) for s in steps],
    )


def test_folding_a_succeeded_run_gives_the_states_the_nats_client_records() -> None:
    # The sequence of tests/unit/test_nats_client.py, whose step data is sparse.
    view = fold(
        [
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
        ],
        RunView.of(record(["research", "write", "edit"])),
    )
    folded = view.to_record(record(["research", "write", "edit"]))
    assert (folded.status, folded.output, folded.finished_at) == (
        "succeeded",
        "the article",
        T0 + timedelta(seconds=9),
    )
    assert [(s.step_id, s.status, s.attempt) for s in folded.steps] == [
        ("research", "succeeded", 2),
        ("write", "succeeded", 1),
        ("edit", "succeeded", 1),
    ]


def test_a_run_ended_by_hand_stops_its_unfinished_steps() -> None:
    base = record(["a", "b", "c"], status="running")
    running = base.model_copy(
        update={
            "steps": [
                StepState(step_id="a", status="succeeded", attempt=1),
                StepState(step_id="b", status="running", attempt=2),
                StepState(step_id="c"),
            ]
        }
    )
    at = T0 + timedelta(minutes=1)
    cancelled = ended_record(running, "cancelled", at=at, error="by user")

    assert (cancelled.status, cancelled.error, cancelled.finished_at) == (
        "cancelled",
        "by user",
        at,
    )
    assert cancelled.updated_at == at
    assert [(s.status, s.attempt) for s in cancelled.steps] == [
        ("succeeded", 1),
        ("cancelled", 2),
        ("skipped", 0),
    ]


def test_the_final_record_settles_what_lost_events_left_open() -> None:
    view = fold([event(0, "step_started", "a", 1)], pending("a", "b"))
    final = record(["a", "b"], status="cancelled").model_copy(
        update={
            "steps": [
                StepState(step_id="a", status="cancelled", attempt=1),
                StepState(step_id="b", status="skipped"),
            ]
        }
    )
    at = T0 + timedelta(seconds=8)
    view = settled(view, final, at=at)

    assert view.status == "cancelled"
    assert states(view) == [("a", "cancelled", 1), ("b", "skipped", 0)]
    assert view.steps["a"].finished_at == at and view.steps["b"].finished_at is None


# --- the coordinator and the fold tell the same story ---------------------------------------

PROVIDER = AgentProvider(
    id="writer",
    type="scripted",
    role="Writer",
    goal="write",
    backstory="writes",
    script=ScriptedScript(replies=["done"]),
)


def task(step_id: str, *deps: str) -> TaskConfig:
    return TaskConfig(
        id=step_id,
        agent_provider_id="writer",
        description=step_id,
        expected_output=step_id,
        depends_on=list(deps),
    )


DIAMOND = WorkflowConfig(
    name="wf",
    agent_providers=[PROVIDER],
    tasks=[task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c")],
    task_sequence=["a", "b", "c", "d"],
)
SETTINGS = Settings(default_retries=1, retry_backoff_base_s=1.0, default_step_timeout_s=30.0)
RETRYABLE = StepError(**RATE_LIMIT)
FATAL = StepError(type="ToolRefused", message="no", retryable=False)


def replay(emitted: list[Command]) -> RunView:
    """The coordinator's Emit commands as the events a local backend records, folded."""
    emits = [c for c in emitted if isinstance(c, Emit)]
    events = [
        RunEvent(run_id=RUN, seq=n, type=e.type, step_id=e.step_id, attempt=e.attempt, data=e.data)
        for n, e in enumerate(emits)
    ]
    return fold(events, pending(*DIAMOND.task_sequence))


def coordinator_states(state: RunState) -> list[tuple[str, str, int]]:
    return [(s.step_id, s.status, s.attempt) for s in state.snapshot()]


def test_the_fold_and_the_coordinator_agree_through_a_retry_and_a_fail_fast() -> None:
    state, out = RunState.start(DIAMOND, RUN, SETTINGS)
    out += state.on_step_started("a", 1)
    out += state.on_step_succeeded("a", 1, "A")
    out += state.on_step_started("b", 1)
    out += state.on_step_failed("b", 1, RETRYABLE)
    view = replay(out)
    assert states(view) == coordinator_states(state)  # b retrying with attempt 1

    out += state.on_retry_due("b")
    out += state.on_step_started("c", 1)
    out += state.on_step_failed("c", 1, FATAL)
    view = replay(out)
    assert states(view) == coordinator_states(state)
    assert (view.status, view.error) == (state.status, state.error)


def test_the_fold_and_the_coordinator_agree_on_a_replay_cancelled_mid_run() -> None:
    reused = {"a": StepResult(run_id="old", step_id="a", attempt=1, status="succeeded", output="A")}
    state, out = RunState.start(DIAMOND, RUN, SETTINGS, reused=reused)
    out += state.on_step_started("b", 1)
    out += state.on_timeout("c", 1)
    out += state.on_cancel("stopped by a test")
    view = replay(out)

    assert states(view) == coordinator_states(state)
    assert view.steps["a"].reused
    assert (view.status, view.error) == ("cancelled", "stopped by a test")


def test_the_fold_and_the_coordinator_agree_on_a_succeeded_run() -> None:
    state, out = RunState.start(DIAMOND, RUN, SETTINGS)
    for step in DIAMOND.task_sequence:
        out += state.on_step_succeeded(step, 1, step.upper())
    view = replay(out)

    assert states(view) == coordinator_states(state)
    assert (view.status, view.output) == ("succeeded", "D")
