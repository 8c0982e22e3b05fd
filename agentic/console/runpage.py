"""The run page's content, read from the store: what `agentic show` reads
(:func:`agentic.cli.details.load_run`), plus each step's spec (the task as it was sent),
the graph and timeline geometry, the planner's record and the session's conversation.

Every text a model, a tool or a user wrote passes :func:`masked` (the process's secret
values become ``***``); the templates escape it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentic import graph, names, redact
from agentic.cli.details import RunDetail, StepDetail, load_run, worker_label
from agentic.console.layout import GraphLayout, Timeline, graph_layout, timeline
from agentic.contracts import StepSpec, utcnow
from agentic.errors import AgenticError, CatalogError
from agentic.ids import is_safe_id

if TYPE_CHECKING:
    from agentic.store import RunStore

MAX_SHOWN_CHARS = 200_000
"""A longer output is cut on the page (the whole stays downloadable with `agentic show`)."""


def masked(text: str | None) -> str:
    """``text`` with this process's secret values masked, cut at :data:`MAX_SHOWN_CHARS`."""
    if not text:
        return ""
    shown = redact.current().text(text)
    if len(shown) > MAX_SHOWN_CHARS:
        return shown[:MAX_SHOWN_CHARS] + f"\n… ({len(shown) - MAX_SHOWN_CHARS} more characters)"
    return shown


def pretty_json(value: Any) -> str:
    return masked(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str))


@dataclass(frozen=True)
class StepPanel:
    """One step as the page shows it."""

    detail: StepDetail
    spec: StepSpec | None
    depends_on: list[str]

    @property
    def step_id(self) -> str:
        return self.detail.step_id

    @property
    def task_text(self) -> str:
        return masked(self.spec.task.description) if self.spec else ""

    @property
    def expected_output(self) -> str:
        return masked(self.spec.task.expected_output) if self.spec else ""

    @property
    def provider(self) -> str:
        """The provider of the last attempt (a fallback's, when it ran on one)."""
        last = self.detail.last
        if last is not None and last.provider:
            return last.provider
        entry = self.spec.agent_provider if self.spec else {}
        return str(entry.get("id", ""))

    @property
    def model(self) -> str:
        entry = self.spec.agent_provider if self.spec else {}
        parts = [str(entry.get(k)) for k in ("type", "model") if entry.get(k)]
        return " / ".join(parts)

    @property
    def worker(self) -> str:
        last = self.detail.last
        return worker_label(last) if last is not None else ""

    @property
    def output(self) -> str:
        return masked(self.detail.output)

    @property
    def output_json(self) -> str:
        value = self.detail.output_json
        return pretty_json(value) if value is not None else ""

    @property
    def error(self) -> str:
        error = self.detail.error
        return masked(f"{error.type}: {error.message}") if error is not None else ""

    @property
    def attempt_rows(self) -> list[dict[str, Any]]:
        rows = []
        for a in self.detail.attempts:
            rows.append(
                {
                    "attempt": a.attempt,
                    "status": a.status,
                    "duration": a.timing.duration_s,
                    "provider": a.provider or "",
                    "worker": worker_label(a),
                    "tokens": a.usage.total_tokens,
                    "cost": a.usage.cost_usd,
                    "error": masked(f"{a.error.type}: {a.error.message}") if a.error else "",
                }
            )
        return rows


@dataclass(frozen=True)
class Conversation:
    """The goals of a session, oldest first, each with its answer when it has one."""

    name: str
    entries: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class RunPage:
    """Everything the run page renders."""

    detail: RunDetail
    panels: list[StepPanel]
    graph: GraphLayout | None
    timeline: Timeline
    plan: dict[str, Any] | None
    conversation: Conversation | None

    @property
    def record(self) -> Any:
        return self.detail.record

    @property
    def run_id(self) -> str:
        return str(self.detail.record.run_id)

    @property
    def output(self) -> str:
        return masked(self.detail.output)

    @property
    def output_json(self) -> str:
        value = self.detail.output_json
        return pretty_json(value) if value is not None else ""

    @property
    def error(self) -> str:
        return masked(self.detail.record.error)

    @property
    def session(self) -> str | None:
        plan = self.plan or {}
        session = plan.get("session")
        return session if is_safe_id(session) else None


def read_run_page(store: RunStore, run_id: str) -> RunPage:
    """The run page of ``run_id``.

    Raises:
        UnsafeIdError: not a run id. UnknownRunError: no such run.
    """
    detail = load_run(store, run_id)
    record = detail.record
    deps: dict[str, list[str]] = {}
    if record.workflow is not None:
        try:
            deps = graph.dependencies(record.workflow)
        except CatalogError:
            deps = {s: [] for s in record.workflow.task_sequence}
    statuses = {s.step_id: s.status for s in detail.steps}
    layout = graph_layout(deps or {s.step_id: [] for s in detail.steps}, statuses)
    panels = [
        StepPanel(s, _spec(store, run_id, s.step_id), deps.get(s.step_id, [])) for s in detail.steps
    ]
    bars = timeline(
        [s.step_id for s in detail.steps],
        {s.step_id: s.attempts for s in detail.steps},
        start=record.created_at,
        now=record.finished_at or utcnow(),
    )
    plan = record.plan if isinstance(record.plan, dict) else None
    return RunPage(detail, panels, layout, bars, plan, _conversation(store, plan))


def _spec(store: RunStore, run_id: str, step_id: str) -> StepSpec | None:
    try:
        return store.read_spec(run_id, step_id)
    except AgenticError:  # never dispatched (skipped, reused), or unreadable
        return None


def _conversation(store: RunStore, plan: dict[str, Any] | None) -> Conversation | None:
    """The session's goals and answers (a finished run's answer from its ``run.json`` when
    the session was not told, as the planner reads it)."""
    name = (plan or {}).get("session")
    if not isinstance(name, str) or not is_safe_id(name):
        return None
    doc = store.read_json(names.session_json(name))
    raw = doc.get("entries") if isinstance(doc, dict) else None
    entries = []
    for entry in raw if isinstance(raw, list) else []:
        if not isinstance(entry, dict) or not is_safe_id(entry.get("run_id")):
            continue
        answer, status = entry.get("final_answer"), entry.get("status")
        if status is None:
            found = store.readable_run(entry["run_id"])
            if found is not None and found.is_terminal:
                answer, status = found.output, found.status
        entries.append(
            {
                "run_id": entry["run_id"],
                "goal": masked(str(entry.get("goal", ""))),
                "answer": masked(answer) if isinstance(answer, str) else "",
                "status": status or "running",
            }
        )
    return Conversation(name, entries)


def plan_summary(plan: dict[str, Any]) -> dict[str, Any]:
    """The planner section: the goal, each call's verdict, the planned steps."""
    calls = []
    for i, reply in enumerate(plan.get("replies") or [], start=1):
        problems = reply.get("problems") if isinstance(reply, dict) else None
        calls.append({"n": i, "verdict": masked(problems[0]) if problems else "accepted"})
    found = plan.get("plan")
    accepted: dict[str, Any] = found if isinstance(found, dict) else {}
    steps = []
    for step in accepted.get("steps") or []:
        if isinstance(step, dict):
            steps.append(
                {
                    "id": str(step.get("id", "")),
                    "agent": str(step.get("agent") or step.get("agent_provider_id") or ""),
                    "description": masked(str(step.get("description", ""))),
                }
            )
    return {
        "goal": masked(str(plan.get("goal", ""))),
        "mode": str(plan.get("mode", "")),
        "planner": str(plan.get("planner", "")),
        "session": plan.get("session") if is_safe_id(plan.get("session")) else None,
        "calls": calls,
        "steps": steps,
        "workflow": str(accepted.get("workflow") or ""),
        "raw": pretty_json(plan),
    }
