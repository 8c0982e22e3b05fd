"""What `agentic runs` and `agentic show` report, read from the run store.

Plain data (no rendering): :func:`load_run` gathers a run's record with every attempt of
every step; :func:`list_runs` filters and sorts run summaries. Both back the commands' text
output and their ``--json`` documents, so the two never disagree.

Token usage counts every attempt of this run (a failed attempt's tokens were spent too), and
never a result a replay reused from another run (those tokens were spent there).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from agentic import graph
from agentic.contracts import (
    Artifact,
    RunHeadline,
    RunRecord,
    RunStatus,
    StepError,
    StepResult,
    StepStatus,
    Usage,
    utcnow,
)
from agentic.errors import ConfigError, UnknownRunError
from agentic.ids import check_id
from agentic.recording.journal import abandoned

if TYPE_CHECKING:
    from agentic.store import RunStore

ABANDONED = "abandoned"
"""How `runs` and `show` call a ``running`` run whose driving process is gone (``--status``
accepts it too); ``run.json`` itself still says ``running``."""

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def total_usage(usages: Iterable[Usage]) -> Usage:
    """The sum of ``usages``; the cost is unknown (None) only when no part had one."""
    items = list(usages)
    costs = [u.cost_usd for u in items if u.cost_usd is not None]
    return Usage(
        prompt_tokens=sum(u.prompt_tokens for u in items),
        completion_tokens=sum(u.completion_tokens for u in items),
        cost_usd=sum(costs) if costs else None,
    )


def usage_json(usage: Usage) -> dict[str, Any]:
    """``usage`` with its total, as the ``--json`` documents show it."""
    return {**usage.model_dump(mode="json"), "total_tokens": usage.total_tokens}


def worker_label(result: StepResult) -> str:
    """Where an attempt ran: the pod, else ``host:pid``; empty when unknown."""
    if result.worker is None:
        return ""
    return result.worker.pod or f"{result.worker.host}:{result.worker.pid}"


@dataclass(frozen=True)
class StepDetail:
    """One step of a run: its state, every attempt, and the committed result."""

    step_id: str
    status: StepStatus
    attempt: int
    attempts: list[StepResult] = field(default_factory=list)
    result: StepResult | None = None

    @property
    def last(self) -> StepResult | None:
        """The committed result, else the latest attempt."""
        return self.result or (self.attempts[-1] if self.attempts else None)

    @property
    def duration_s(self) -> float | None:
        last = self.last
        return None if last is None else last.timing.duration_s

    @property
    def output(self) -> str | None:
        return self.result.output if self.result and self.result.status == "succeeded" else None

    @property
    def output_json(self) -> dict[str, Any] | None:
        """The answer as JSON, for a task with an output_schema."""
        ok = self.result is not None and self.result.status == "succeeded"
        return self.result.output_json if ok and self.result is not None else None

    @property
    def error(self) -> StepError | None:
        last = self.last
        return None if last is None or last.status == "succeeded" else last.error

    @property
    def reused_from(self) -> str | None:
        return self.result.reused_from if self.result else None

    @property
    def usage(self) -> Usage:
        """Tokens this run spent on the step (nothing for a reused result)."""
        spent = [a for a in self.attempts if a.reused_from is None]
        if not spent and self.result is not None and self.result.reused_from is None:
            spent = [self.result]  # a backend that commits without writing attempts
        return total_usage(a.usage for a in spent)

    @property
    def artifacts(self) -> list[Artifact]:
        return list(self.result.artifacts) if self.result else []

    def to_json(self) -> dict[str, Any]:
        """The step as ``show --json`` prints it (full output)."""
        return {
            "step_id": self.step_id,
            "status": self.status,
            "attempt": self.attempt,
            "duration_s": self.duration_s,
            "usage": usage_json(self.usage),
            "output": self.output,
            "output_json": self.output_json,
            "error": self.error.model_dump(mode="json") if self.error else None,
            "reused_from": self.reused_from,
            "artifacts": [a.model_dump(mode="json") for a in self.artifacts],
            "attempts": [_attempt_json(a) for a in self.attempts],
        }


def _attempt_json(result: StepResult) -> dict[str, Any]:
    return {
        "attempt": result.attempt,
        "status": result.status,
        "started_at": _iso(result.timing.started_at),
        "finished_at": _iso(result.timing.finished_at),
        "duration_s": result.timing.duration_s,
        "provider": result.provider,
        "worker": worker_label(result) or None,
        "error": result.error.model_dump(mode="json") if result.error else None,
        "usage": usage_json(result.usage),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class RunDetail:
    """A run as `agentic show` reports it."""

    record: RunRecord
    steps: list[StepDetail]

    @property
    def usage(self) -> Usage:
        return total_usage(step.usage for step in self.steps)

    @property
    def elapsed_s(self) -> float | None:
        return run_elapsed_s(self.record)

    @property
    def steps_succeeded(self) -> int:
        return sum(1 for step in self.steps if step.status == "succeeded")

    @property
    def abandoned(self) -> bool:
        """``running`` in the store, but the process that drove it is gone."""
        return abandoned(self.record)

    @property
    def output(self) -> str | None:
        """The run's whole output: ``run.json`` keeps only the start of a long one
        (``output_bytes``), whose whole is the committed output of the run's output step."""
        record = self.record
        if record.output_bytes is None or record.workflow is None:
            return record.output
        final = next(
            (s for s in self.steps if s.step_id == graph.final_step(record.workflow)), None
        )
        return final.output if final is not None and final.output is not None else record.output

    @property
    def output_json(self) -> dict[str, Any] | None:
        """The run's output as JSON, when the step it comes from has an output_schema."""
        record = self.record
        if record.status != "succeeded" or record.workflow is None:
            return None
        final_id = graph.final_step(record.workflow)
        final = next((s for s in self.steps if s.step_id == final_id), None)
        return final.output_json if final is not None else None

    def step(self, step_id: str) -> StepDetail:
        """The step called ``step_id``.

        Raises:
            UnknownRunError: the run has no such step (the message lists its steps).
        """
        for step in self.steps:
            if step.step_id == step_id:
                return step
        known = ", ".join(s.step_id for s in self.steps) or "none"
        raise UnknownRunError(
            f"run {self.record.run_id!r} has no step {step_id!r}; its steps: {known}",
            run_id=self.record.run_id,
            step_id=step_id,
        )

    def to_json(self) -> dict[str, Any]:
        """The document ``show --json`` and ``run --json`` print."""
        record = self.record
        return {
            "run_id": record.run_id,
            "status": record.status,
            "workflow": record.workflow_name,
            "backend": record.backend,
            "created_at": _iso(record.created_at),
            "finished_at": _iso(record.finished_at),
            "elapsed_s": self.elapsed_s,
            "replay_of": record.replay_of,
            "inputs": record.inputs,
            "labels": record.labels,
            "output": self.output,
            "output_json": self.output_json,
            "error": record.error,
            "usage": usage_json(self.usage),
            "steps": [step.to_json() for step in self.steps],
            "plan": record.plan,
            "abandoned": self.abandoned,
            "driver": record.driver.model_dump() if record.driver else None,
        }


def run_elapsed_s(record: RunRecord | RunHeadline, now: datetime | None = None) -> float | None:
    """Seconds from creation to the end (to ``now`` while it runs)."""
    if record.finished_at is not None:
        end = record.finished_at
    elif record.is_terminal:
        end = record.updated_at
    else:
        end = now or utcnow()
    return max(0.0, (end - record.created_at).total_seconds())


def load_run(store: RunStore, run_id: str) -> RunDetail:
    """The run ``run_id`` with every attempt of every step.

    Raises:
        UnsafeIdError: ``run_id`` cannot be a run id.
        UnknownRunError: the store holds no such run.
    """
    check_id(run_id, "run id")
    if not store.run_exists(run_id):
        raise UnknownRunError(
            f"no run {run_id!r} in the run store {store.url}; `agentic runs` lists them",
            run_id=run_id,
        )
    record = store.read_run(run_id)
    states = {s.step_id: s for s in record.steps}
    order = list(record.workflow.task_sequence) if record.workflow else list(states)
    order += [s for s in store.list_step_ids(run_id) if s not in order]
    steps = []
    for step_id in order:
        attempts = sorted(store.read_attempts(run_id, step_id), key=lambda a: a.attempt)
        result = store.read_result(run_id, step_id)
        state = states.get(step_id)
        # A step found in the store that run.json does not list: its result says how it ended.
        status: StepStatus = state.status if state else (result.status if result else "pending")
        attempt = max([state.attempt if state else 0, *(a.attempt for a in attempts)])
        steps.append(StepDetail(step_id, status, attempt, attempts, result))
    return RunDetail(record, steps)


@dataclass(frozen=True)
class RunSummary:
    """One row of `agentic runs`."""

    run_id: str
    workflow: str
    status: RunStatus
    backend: str
    created_at: datetime
    elapsed_s: float | None
    steps_succeeded: int
    steps_total: int
    replay_of: str | None = None
    abandoned: bool = False

    @classmethod
    def of(cls, run: RunHeadline) -> RunSummary:
        return cls(
            run_id=run.run_id,
            workflow=run.workflow,
            status=run.status,
            backend=run.backend,
            created_at=run.created_at,
            elapsed_s=run_elapsed_s(run),
            steps_succeeded=run.steps_succeeded,
            steps_total=run.steps_total,
            replay_of=run.replay_of,
            abandoned=abandoned(run),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": self.status,
            "backend": self.backend,
            "created_at": _iso(self.created_at),
            "elapsed_s": self.elapsed_s,
            "steps_succeeded": self.steps_succeeded,
            "steps_total": self.steps_total,
            "replay_of": self.replay_of,
            "abandoned": self.abandoned,
        }


@dataclass(frozen=True)
class RunListing:
    """Runs that matched, newest first."""

    runs: list[RunSummary]


def list_runs(
    store: RunStore,
    *,
    status: str | None = None,
    workflow: str | None = None,
    since: datetime | None = None,
    limit: int | None = 20,
) -> RunListing:
    """The runs of ``store`` that match every filter given, newest first.

    Pages through the store's runs index (:mod:`agentic.store.index`): what it costs depends
    on the runs read until ``limit`` of them matched, not on the store's history. A run
    whose ``run.json`` cannot be read is left out (the store logs it).
    """
    runs: list[RunSummary] = []
    for headline in store.headlines(since=since):
        run = RunSummary.of(headline)
        if (status is None or run.status == status or (status == ABANDONED and run.abandoned)) and (
            workflow is None or run.workflow == workflow
        ):
            runs.append(run)
            if limit and len(runs) >= limit:
                break
    return RunListing(runs)


def parse_age(text: str, option: str) -> timedelta:
    """An age like ``30m``, ``12h`` or ``7d``.

    Raises:
        ConfigError: not one (the message names ``option``).
    """
    match = _RELATIVE.fullmatch(text.strip().lower())
    if not match:
        raise ConfigError(f"{option} {text!r}: expected an age such as 30m, 12h or 7d")
    amount, unit = int(match.group(1)), _UNITS[match.group(2)]
    return timedelta(**{unit: amount})


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``: an ISO date or time (local time unless it says), or an age like ``2h``.

    Raises:
        ConfigError: neither.
    """
    now = now or utcnow()
    if _RELATIVE.fullmatch(text.strip().lower()):
        return now - parse_age(text, "--since")
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(
            f"--since {text!r}: expected a date (2026-01-31), a time (2026-01-31T14:00) "
            "or an age (30m, 12h, 7d)"
        ) from exc
    return parsed if parsed.tzinfo else parsed.astimezone()
