"""Live progress: run events become one row per step, drawn as a table or as log lines."""

from __future__ import annotations

import io
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console

from agentic.cli.progress import (
    LiveProgress,
    PlainProgress,
    RunProgress,
    format_duration,
    plain_line,
    progress_reporter,
    progress_table,
)
from agentic.contracts import RunEvent, RunRecord, RunRequest, StepState

T0 = datetime(2026, 1, 31, 12, 0, 0, tzinfo=UTC)
RUN = "run-progress-1"


def event(seq: int, type_: str, step: str | None = None, attempt: int | None = None,
          at: float = 0.0, **data: Any) -> RunEvent:  # fmt: skip
    return RunEvent(
        run_id=RUN, seq=seq, type=type_, step_id=step, attempt=attempt,
        ts=T0 + timedelta(seconds=at), data=data,
    )  # fmt: skip


def record(*steps: tuple[str, str, int], status: str = "running") -> RunRecord:
    return RunRecord(
        run_id=RUN,
        status=status,  # type: ignore[arg-type]
        request=RunRequest(workflow_ref="demo"),
        backend="inprocess",
        steps=[StepState(step_id=s, status=st, attempt=a) for s, st, a in steps],  # type: ignore[arg-type]
        finished_at=T0 + timedelta(seconds=9) if status != "running" else None,
    )


def console(*, terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=120, color_system=None), buffer


def test_a_step_goes_from_pending_to_succeeded_with_its_duration() -> None:
    progress = RunProgress(["research", "write"])
    progress.apply(event(1, "step_ready", "research", 1, at=0.0))
    progress.apply(event(2, "step_started", "research", 1, at=0.5))
    progress.apply(event(3, "step_succeeded", "research", 1, at=2.0, output_chars=40))

    research, write = progress.rows()
    assert (research.status, research.attempt) == ("succeeded", 1)
    assert research.duration_s(T0 + timedelta(hours=1)) == 1.5  # start to finish, not "now"
    assert (write.status, write.attempt, write.duration_s(T0)) == ("pending", 0, None)


def test_a_running_step_duration_ticks_with_the_clock() -> None:
    progress = RunProgress(["research"])
    progress.apply(event(1, "step_started", "research", 1, at=0.0))
    (row,) = progress.rows()
    assert row.status == "running"
    assert row.duration_s(T0 + timedelta(seconds=3)) == 3.0
    assert row.duration_s(T0 + timedelta(seconds=7)) == 7.0


def test_a_step_without_a_started_event_is_timed_from_when_it_was_ready() -> None:
    progress = RunProgress(["write"])
    progress.apply(event(1, "step_ready", "write", 1, at=1.0))
    progress.apply(event(2, "step_succeeded", "write", 1, at=1.25))
    assert progress.rows()[0].duration_s(T0) == 0.25


def test_an_ended_step_takes_the_duration_its_result_records_as_agentic_show_does() -> None:
    # The events bracket the step process's start-up and the commit; the result's timing
    # (what `agentic show` reports) is the attempt itself.
    progress = RunProgress(["research", "write"])
    progress.apply(event(1, "step_started", "research", 1, at=0.0))
    progress.apply(event(2, "step_succeeded", "research", 1, at=4.0, duration_s=1.25))
    error = {"type": "Boom", "message": "no", "retryable": False}
    progress.apply(event(3, "step_started", "write", 1, at=4.0))
    progress.apply(event(4, "step_failed", "write", 1, at=9.0, error=error, duration_s=0.5))

    research, write = progress.rows()
    assert research.duration_s(T0 + timedelta(hours=1)) == 1.25
    assert write.duration_s(T0 + timedelta(hours=1)) == 0.5
    line = plain_line(event(2, "step_succeeded", "research", 1, at=4.0), research)
    assert line is not None and line.endswith("research succeeded (attempt 1) in 1.25s")

    progress.apply(event(5, "step_ready", "write", 2, at=10.0))  # a new attempt: its own clock
    progress.apply(event(6, "step_started", "write", 2, at=10.0))
    assert progress.rows()[1].duration_s(T0 + timedelta(seconds=12)) == 2.0


def test_a_retried_step_shows_the_error_the_delay_and_then_its_new_attempt() -> None:
    progress = RunProgress(["write"])
    progress.apply(event(1, "step_started", "write", 1))
    error = {"type": "RateLimited", "message": "slow down", "retryable": True}
    progress.apply(event(2, "step_failed", "write", 1, at=1.0, error=error, will_retry=True))
    progress.apply(event(3, "step_retrying", "write", 2, at=1.0, delay_s=2.0))

    (row,) = progress.rows()
    assert row.status == "retrying"
    assert row.attempt == 1
    assert "retry in 2.0s" in row.note and "RateLimited: slow down" in row.note

    progress.apply(event(4, "step_started", "write", 2, at=3.0))
    progress.apply(event(5, "step_succeeded", "write", 2, at=3.5))
    (row,) = progress.rows()
    assert (row.status, row.attempt, row.note) == ("succeeded", 2, "")
    assert row.duration_s(T0) == 0.5  # the second attempt's own duration


def test_an_attempt_on_a_fallback_provider_says_which_until_the_step_ends() -> None:
    progress = RunProgress(["write"])
    error = {"type": "RateLimitError", "message": "429", "retryable": True, "provider_failed": True}
    progress.apply(event(1, "step_failed", "write", 1, error=error, will_retry=True))
    ready = event(2, "step_ready", "write", 2, prior_steps=[], provider="spare", fallback=True)
    line = plain_line(ready, progress.apply(ready))
    assert line is not None and line.endswith("write ready (attempt 2): on fallback provider spare")

    progress.apply(event(3, "step_started", "write", 2, at=0.5))
    (row,) = progress.rows()
    assert (row.status, row.note) == ("running", "on fallback provider spare")
    progress.apply(event(4, "step_succeeded", "write", 2, at=1.0))
    assert progress.rows()[0].note == ""


def test_a_step_waiting_for_its_providers_budget_says_so_until_it_starts() -> None:
    progress = RunProgress(["write"])
    progress.apply(event(1, "step_ready", "write", 1, prior_steps=[]))
    note = event(2, "step_progress", "write", 1, message="waiting for gpt budget")
    line = plain_line(note, progress.apply(note))
    assert line is not None and line.endswith("write progress (attempt 1): waiting for gpt budget")
    assert progress.rows()[0].note == "waiting for gpt budget"

    progress.apply(event(3, "step_started", "write", 1, at=2.0))
    assert progress.rows()[0].note == ""


def test_a_reused_step_says_so() -> None:
    progress = RunProgress(["research"])
    progress.apply(event(1, "step_succeeded", "research", 1, reused=True))
    assert progress.rows()[0].note.startswith("reused")


def test_steps_first_seen_in_events_are_added_after_the_known_ones() -> None:
    progress = RunProgress(["a"])
    progress.apply(event(1, "step_started", "b", 1))
    assert [r.step_id for r in progress.rows()] == ["a", "b"]


def test_finish_takes_final_states_from_the_record_and_stops_running_clocks() -> None:
    progress = RunProgress()
    progress.start(record(("a", "pending", 0), ("b", "pending", 0)))
    progress.apply(event(1, "step_started", "a", 1, at=1.0))
    # Ctrl-C: no more events arrive, the record says what became of each step.
    final = record(("a", "cancelled", 1), ("b", "skipped", 0), status="cancelled")
    progress.finish(final)

    a, b = progress.rows()
    assert (a.status, b.status, progress.status) == ("cancelled", "skipped", "cancelled")
    assert a.duration_s(T0 + timedelta(hours=1)) == 8.0  # frozen at finished_at


def test_progress_accepts_events_from_several_threads() -> None:
    steps = [f"s{i}" for i in range(20)]
    progress = RunProgress(steps)

    def feed(step: str) -> None:
        for seq, kind in enumerate(("step_ready", "step_started", "step_succeeded")):
            progress.apply(event(seq, kind, step, 1, at=seq))

    threads = [threading.Thread(target=feed, args=(s,)) for s in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {r.status for r in progress.rows()} == {"succeeded"}


def test_plain_lines_name_the_step_the_attempt_the_duration_and_the_error() -> None:
    progress = RunProgress(["write"])
    started = event(1, "step_started", "write", 1)
    error = {"type": "FatalStepError", "message": "tool refused", "retryable": False}
    failed = event(2, "step_failed", "write", 1, at=0.75, error=error, will_retry=False)
    lines = [plain_line(e, progress.apply(e)) for e in (started, failed)]

    assert lines[0] is not None and lines[0].endswith("write started (attempt 1)")
    assert lines[1] is not None
    assert "write failed (attempt 1) in 0.75s: FatalStepError: tool refused" in lines[1]


def test_a_plain_line_for_the_end_of_the_run_carries_its_error() -> None:
    finished = event(9, "failed", error="step 'write' failed after 1 attempt")
    line = plain_line(finished, None)
    assert line is not None and line.endswith(
        f"run {RUN} failed: step 'write' failed after 1 attempt"
    )
    assert plain_line(event(3, "step_progress"), None) is None


def test_plain_progress_prints_one_line_per_event_and_no_terminal_codes() -> None:
    out, buffer = console(terminal=False)
    reporter = progress_reporter(out)
    assert isinstance(reporter, PlainProgress)
    with reporter:
        reporter.start(record(("research", "pending", 0), ("write", "pending", 0)))
        reporter.on_event(event(1, "step_started", "research", 1))
        reporter.on_event(event(2, "step_succeeded", "research", 1, at=0.05))
        reporter.finish(record(("research", "succeeded", 1), ("write", "skipped", 0)))

    lines = buffer.getvalue().splitlines()
    assert lines[0] == f"run {RUN} on inprocess: research, write"
    assert lines[1].endswith("research started (attempt 1)")
    assert lines[2].endswith("research succeeded (attempt 1) in 0.05s")
    assert len(lines) == 3
    assert "\x1b" not in buffer.getvalue()


def test_on_a_terminal_the_reporter_draws_a_table_of_every_step() -> None:
    out, buffer = console(terminal=True)
    reporter = progress_reporter(out)
    assert isinstance(reporter, LiveProgress)
    with reporter:
        reporter.start(record(("research", "pending", 0), ("write", "pending", 0)))
        reporter.on_event(event(1, "step_started", "research", 1))
        reporter.on_event(event(2, "step_succeeded", "research", 1, at=1.5))
        reporter.finish(record(("research", "succeeded", 1), ("write", "failed", 2)))

    final_frame = buffer.getvalue().split("\x1b[2K")[-1]
    assert "research" in final_frame and "succeeded" in final_frame and "1.50s" in final_frame
    assert "write" in final_frame and "failed" in final_frame


def test_the_table_has_the_step_status_attempt_duration_and_note_columns() -> None:
    progress = RunProgress()
    progress.start(record(("research", "pending", 0)))
    progress.apply(event(1, "step_started", "research", 1))
    out, buffer = console(terminal=False)
    out.print(progress_table(progress, T0 + timedelta(seconds=12)))
    text = buffer.getvalue()
    for column in ("step", "status", "attempt", "duration", "note"):
        assert column in text
    assert "running" in text and "12.0s" in text


def test_durations_read_naturally_at_every_scale() -> None:
    assert [format_duration(s) for s in (None, 0.054, 12.34, 245, 7380)] == [
        "", "0.05s", "12.3s", "4m05s", "2h03m",
    ]  # fmt: skip


def test_the_end_of_the_run_stops_its_steps_even_before_the_final_record() -> None:
    progress = RunProgress(["research", "write"])
    progress.apply(event(1, "step_started", "research", 1, at=1.0))
    progress.apply(event(2, "cancelled", at=4.0, error="cancelled by request"))
    # A worker that finishes after the cancel does not bring the step back (nor print a line).
    assert progress.apply(event(3, "step_succeeded", "research", 1, at=5.0)) is None

    research, write = progress.rows()
    assert (progress.status, research.status, write.status) == ("cancelled", "cancelled", "skipped")
    assert research.duration_s(T0 + timedelta(hours=1)) == 3.0
