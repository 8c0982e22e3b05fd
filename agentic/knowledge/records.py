"""Provider track records: how each agent provider's steps went, from the indexed attempts.

Per provider (and the model it names): the runs it worked in, its attempts and how many
succeeded, the retries it needed, the median and 95th percentile of an attempt's duration,
tokens and cost per succeeded step, the mean review score of the runs it worked in, and its
last failure. ``agentic stats`` prints them and the planner prompt carries a compact table;
a provider below ``AGENTIC_PLANNER_MIN_SUCCESS_RATE`` over at least
``AGENTIC_PLANNER_MIN_STEPS`` attempts is *flagged* (shown, not hidden: the planner decides).

Everything is computed by SQLite over the ``attempts`` table (indexed by provider), so a
planner's table costs milliseconds at tens of thousands of attempts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from agentic.knowledge.index import KnowledgeIndex


@dataclass(frozen=True)
class TrackRecord:
    """One provider's figures (see the module docstring)."""

    provider: str
    model: str | None
    runs: int
    attempts: int
    succeeded: int
    steps: int
    tokens: int
    cost_usd: float | None
    median_s: float | None
    p95_s: float | None
    review_score: float | None
    last_failure: str | None
    last_failure_at: str | None

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.attempts if self.attempts else 0.0

    @property
    def retries(self) -> int:
        """Attempts beyond the first of each step: what failures cost in calls."""
        return self.attempts - self.steps

    @property
    def tokens_per_step(self) -> float | None:
        return self.tokens / self.succeeded if self.succeeded else None

    @property
    def cost_per_step(self) -> float | None:
        if self.cost_usd is None or not self.succeeded:
            return None
        return self.cost_usd / self.succeeded

    def flagged(self, *, min_success_rate: float, min_steps: int) -> bool:
        """Below the success rate, over enough attempts to say so."""
        return self.attempts >= min_steps and self.success_rate < min_success_rate

    def to_json(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "model": self.model,
            "runs": self.runs,
            "attempts": self.attempts,
            "succeeded": self.succeeded,
            "success_rate": round(self.success_rate, 4),
            "retries": self.retries,
            "median_s": self.median_s,
            "p95_s": self.p95_s,
            "tokens_per_step": self.tokens_per_step,
            "cost_per_step_usd": self.cost_per_step,
            "review_score": self.review_score,
            "last_failure": self.last_failure,
            "last_failure_at": self.last_failure_at,
        }


def track_records(
    index: KnowledgeIndex, *, since: str | None = None, providers: Sequence[str] | None = None
) -> list[TrackRecord]:
    """Every provider's track record (or ``providers``'), busiest first; ``since``: only
    attempts that ended at or after this ISO time (UTC)."""
    where: str = "1=1"
    args: list[object] = []
    if since is not None:
        where += " AND finished_at >= ?"
        args.append(since)
    if providers is not None:
        if not providers:
            return []
        where += f" AND provider IN ({','.join('?' * len(providers))})"
        args.extend(providers)
    with index.reading() as db:
        totals = db.execute(
            "SELECT provider, max(model), count(DISTINCT run_id), count(*), "
            "sum(status = 'succeeded'), count(DISTINCT run_id || '/' || step_id), "
            "sum(CASE WHEN status = 'succeeded' THEN tokens ELSE 0 END), "
            "sum(CASE WHEN status = 'succeeded' THEN cost_usd END), count(duration_s) "
            f"FROM attempts WHERE {where} GROUP BY provider",
            args,
        ).fetchall()
        reviews = dict(
            db.execute(
                "SELECT a.provider, avg(r.review_score) FROM runs r JOIN "
                f"(SELECT DISTINCT provider, run_id FROM attempts WHERE {where}) a "
                "ON a.run_id = r.run_id WHERE r.review_score IS NOT NULL GROUP BY a.provider",
                args,
            ).fetchall()
        )
        found = []
        for provider, model, runs, attempts, ok, steps, tokens, cost, timed in totals:
            scope = (where + " AND provider = ?", [*args, provider])
            failure = db.execute(
                f"SELECT error, finished_at FROM attempts WHERE {scope[0]} "
                "AND status = 'failed' ORDER BY finished_at DESC LIMIT 1",
                scope[1],
            ).fetchone()
            found.append(
                TrackRecord(
                    provider=provider,
                    model=model,
                    runs=runs,
                    attempts=attempts,
                    succeeded=ok or 0,
                    steps=steps,
                    tokens=tokens or 0,
                    cost_usd=cost,
                    median_s=_nth_duration(db, scope, (timed - 1) // 2) if timed else None,
                    p95_s=_nth_duration(db, scope, round(0.95 * (timed - 1))) if timed else None,
                    review_score=reviews.get(provider),
                    last_failure=failure[0] if failure else None,
                    last_failure_at=failure[1] if failure else None,
                )
            )
    return sorted(found, key=lambda r: (-r.attempts, r.provider))


def _nth_duration(db: sqlite3.Connection, scope: tuple[str, list[object]], n: int) -> float | None:
    row = db.execute(
        f"SELECT duration_s FROM attempts WHERE {scope[0]} AND duration_s IS NOT NULL "
        "ORDER BY duration_s LIMIT 1 OFFSET ?",
        [*scope[1], n],
    ).fetchone()
    return float(row[0]) if row else None
