"""The knowledge index's pieces that need no store: queries, the review's rule, privacy."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from agentic.contracts import (
    Review,
    RunRecord,
    RunRequest,
    StepError,
    StepResult,
    Timing,
    Usage,
)
from agentic.coordinator import FinishRun, RunState
from agentic.knowledge import KnowledgeIndex, fts_query, is_private, track_records
from agentic.review import read_review, with_review
from agentic.settings import Settings
from agentic.store import open_store
from tests.unit.test_coordinator import task, workflow


@pytest.mark.parametrize(
    "hostile",
    [
        'quokkas" OR text:* NEAR(a b) -- ',
        "title:secret AND {drop} ^ * ( ) \" '",
        "DROP TABLE passages; --",
    ],
)
def test_any_text_is_a_query_of_quoted_words_never_fts_syntax(hostile: str) -> None:
    query = fts_query(hostile)
    assert query is not None
    with KnowledgeIndex(":memory:") as index:
        index.add_document("doc-1", "notes", "quokkas and secret tables")
        index.search(hostile)  # no syntax error, whatever the text
        assert index.count() == 1  # and nothing was dropped


def test_words_too_short_or_too_common_make_no_query() -> None:
    assert fts_query("a an of to the and") is None
    assert fts_query("Quokkas, quokkas!") == '"quokkas"'


def test_documents_are_found_replaced_and_removed() -> None:
    with KnowledgeIndex(":memory:") as index:
        index.add_document("d1", "field.md", "The zorblax migrates north.")
        index.add_document("d1", "field.md", "The zorblax migrates south.")  # added again
        (match,) = index.search("zorblax")
        assert match.source == "document field.md" and "south" in match.text
        index.remove_document("d1")
        assert index.search("zorblax") == []


def test_a_private_label_keeps_a_run_out_unless_it_says_no() -> None:
    def record(**labels: str) -> RunRecord:
        return RunRecord(
            run_id="r", request=RunRequest(workflow_ref="w"), backend="inprocess", labels=labels
        )

    assert is_private(record(private="true")) and is_private(record(private=""))
    assert not is_private(record()) and not is_private(record(private="no"))


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ('{"score": 7, "reasons": ["clear"]}', (7.0, ["clear"])),
        ('Thought: fine\n```json\n{"score": 4.5, "reasons": "thin"}\n```', (4.5, ["thin"])),
        ('{"score": 11}', (None, ["the reviewer's reply has no score from 0 to 10"])),
        ('{"score": true}', (None, ["the reviewer's reply has no score from 0 to 10"])),
        ("no json at all", (None, ["the reviewer's reply has no score from 0 to 10"])),
    ],
)
def test_a_reviewers_reply_is_read_strictly(reply: str, expected: tuple) -> None:
    assert read_review(reply) == expected


def reviewed(min_score: float | None = 6.0):  # type: ignore[no-untyped-def]
    wf = workflow(task("draft"), task("edit"))
    return with_review(wf, Review(provider="writer", min_score=min_score), goal="Write well")


def test_the_review_step_follows_the_answer_and_the_answer_stays_the_output() -> None:
    wf = reviewed()
    assert wf.task_sequence == ["draft", "edit", "review"]
    assert wf.review is not None and (wf.review.step, wf.review.of) == ("review", "edit")
    assert "Write well" in wf.task("review").description
    assert with_review(wf, None, goal="Write well") == wf  # a replay adds no second one

    state, _ = RunState.start(wf, "run", Settings(), rng=random.Random(1))
    state.on_step_succeeded("draft", 1, "D")
    state.on_step_succeeded("edit", 1, "the answer")
    commands = state.on_step_succeeded("review", 1, '{"score": 8, "reasons": ["good"]}')
    (end,) = [c for c in commands if isinstance(c, FinishRun)]
    assert (end.status, end.output) == ("succeeded", "the answer")
    assert end.review == {
        "provider": "writer", "score": 8.0, "min_score": 6.0, "reasons": ["good"], "passed": True
    }  # fmt: skip


@pytest.mark.parametrize(
    ("min_score", "reply", "status", "passed"),
    [(6.0, '{"score": 2, "reasons": ["thin"]}', "failed", False),
     (6.0, "no score", "failed", False),
     (None, "no score", "succeeded", False),  # recorded, but nothing to fail against
     (None, '{"score": 1}', "succeeded", True)],
)  # fmt: skip
def test_a_low_score_or_none_fails_the_run_only_with_a_min_score(
    min_score: float | None, reply: str, status: str, passed: bool
) -> None:
    state, _ = RunState.start(reviewed(min_score), "run", Settings(), rng=random.Random(1))
    state.on_step_succeeded("draft", 1, "D")
    state.on_step_succeeded("edit", 1, "the answer")
    (end,) = [c for c in state.on_step_succeeded("review", 1, reply) if isinstance(c, FinishRun)]
    assert end.status == status
    assert end.review is not None and end.review["passed"] is passed


def attempt(run_id: str, n: int, ok: bool, seconds: float, tokens: int, at: int) -> StepResult:
    started = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=at)
    timing = Timing(started_at=started, finished_at=started + timedelta(seconds=seconds))
    usage = Usage(prompt_tokens=tokens, cost_usd=tokens / 10_000 if ok else None)
    if ok:
        return StepResult(run_id=run_id, step_id="a", attempt=n, status="succeeded",
                          output="x", usage=usage, timing=timing, provider="writer")  # fmt: skip
    error = StepError(type="RateLimit", message=f"429 at {at}", retryable=True)
    return StepResult.failed(run_id, "a", n, error, timing=timing, worker=None, provider="writer")


def test_track_records_count_retries_durations_reviews_and_the_last_failure() -> None:
    store = open_store(f"memory://kb-{random.random()}")
    wf = workflow(task("a"))
    runs = {
        "r1": ([attempt("r1", 1, False, 1.0, 0, 1), attempt("r1", 2, True, 3.0, 100, 2)], 8.0),
        "r2": ([attempt("r2", 1, True, 5.0, 300, 3)], 6.0),
        "r3": ([attempt("r3", 1, False, 2.0, 0, 4)], None),
    }
    with KnowledgeIndex(":memory:") as index:
        for run_id, (attempts, score) in runs.items():
            for result in attempts:
                store.write_attempt(result)
            review = {"score": score} if score is not None else None
            record = RunRecord(run_id=run_id, status="succeeded", request=RunRequest(
                workflow_ref="w"), workflow=wf, backend="inprocess", review=review)  # fmt: skip
            index.add_run(store, record)
        (record,) = track_records(index)
        since = track_records(index, since="2026-01-01T00:02:30+00:00")

    assert (record.provider, record.runs, record.attempts, record.succeeded) == ("writer", 3, 4, 2)
    assert record.retries == 1  # r1's step needed a second attempt
    assert (record.median_s, record.p95_s) == (2.0, 5.0)  # of 1, 2, 3, 5 s
    assert record.tokens_per_step == 200 and record.cost_per_step == pytest.approx(0.02)
    assert record.review_score == 7.0 and record.last_failure == "RateLimit: 429 at 4"
    assert record.flagged(min_success_rate=0.6, min_steps=4)
    assert not record.flagged(min_success_rate=0.6, min_steps=5)
    assert [(r.attempts, r.succeeded) for r in since] == [(2, 1)]  # r2 and r3 only
