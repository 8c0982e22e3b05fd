"""Provider track records: how each agent provider's steps went, from the indexed attempts.

Per provider (and the model it names): the runs it worked in, its attempts and how many
succeeded, the retries it needed, the median and 95th percentile of an attempt's duration,
tokens and cost per succeeded step, the mean review score of the runs it worked in, and its
last failure. ``agentic stats`` prints them and the planner prompt carries a compact table;
a provider below ``AGENTIC_PLANNER_MIN_SUCCESS_RATE`` over at least
``AGENTIC_PLANNER_MIN_STEPS`` attempts is *flagged* (shown, not hidden: the planner decides).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from agentic.knowledge.index import KnowledgeIndex


@dataclass
class TrackRecord:
    """One provider's figures (see the module docstring)."""

    provider: str
    model: str | None = None
    runs: set[str] = field(default_factory=set)
    attempts: int = 0
    succeeded: int = 0
    durations: list[float] = field(default_factory=list)
    tokens: int = 0
    cost_usd: float | None = None
    reviews: dict[str, float] = field(default_factory=dict)
    last_failure: str | None = None
    last_failure_at: str | None = None

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.attempts if self.attempts else 0.0

    @property
    def retries(self) -> int:
        """Attempts beyond the first of each step: what failures cost in calls."""
        return self.attempts - len(self._steps)

    _steps: set[tuple[str, str]] = field(default_factory=set, repr=False)

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.durations) if self.durations else None

    @property
    def p95_s(self) -> float | None:
        if not self.durations:
            return None
        ordered = sorted(self.durations)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    @property
    def tokens_per_step(self) -> float | None:
        return self.tokens / self.succeeded if self.succeeded else None

    @property
    def cost_per_step(self) -> float | None:
        if self.cost_usd is None or not self.succeeded:
            return None
        return self.cost_usd / self.succeeded

    @property
    def review_score(self) -> float | None:
        return statistics.fmean(self.reviews.values()) if self.reviews else None

    def flagged(self, *, min_success_rate: float, min_steps: int) -> bool:
        """Below the success rate, over enough attempts to say so."""
        return self.attempts >= min_steps and self.success_rate < min_success_rate

    def to_json(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "model": self.model,
            "runs": len(self.runs),
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
    """Every provider's track record from the index, busiest first."""
    return aggregate(index.attempt_rows(since=since, providers=providers))


def aggregate(rows: Iterable[tuple[object, ...]]) -> list[TrackRecord]:
    """Track records from :meth:`KnowledgeIndex.attempt_rows`'s rows."""
    found: dict[str, TrackRecord] = {}
    for row in rows:
        provider, model, run_id, step_id, _, status, duration, tokens, cost, error, at, review = row
        record = found.setdefault(str(provider), TrackRecord(str(provider)))
        record.model = str(model) if model is not None else record.model
        record.runs.add(str(run_id))
        record._steps.add((str(run_id), str(step_id)))
        record.attempts += 1
        if isinstance(duration, int | float):
            record.durations.append(float(duration))
        if isinstance(review, int | float):
            record.reviews[str(run_id)] = float(review)
        if status == "succeeded":
            record.succeeded += 1
            record.tokens += int(tokens) if isinstance(tokens, int) else 0
            if isinstance(cost, int | float):
                record.cost_usd = (record.cost_usd or 0.0) + float(cost)
        elif error is not None:
            record.last_failure, record.last_failure_at = str(error), str(at) if at else None
    return sorted(found.values(), key=lambda r: (-r.attempts, r.provider))
