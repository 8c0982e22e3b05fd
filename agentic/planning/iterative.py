"""Iterative planning (``agentic run --goal … --iterative``): plan a step, run it, replan.

How it maps onto runs and the store (see docs/planner.md):

* The run the user asked for (``<id>``) is created at once; its ``run.json`` ``plan`` grows
  round by round (every prompt and raw reply is kept).
* Round ``n`` runs the steps done so far plus the next one as its own run ``<id>-r<n>``
  (labels ``agentic.iterative-of: <id>``, ``agentic.round: n``), through the normal
  machinery of the chosen backend: it reuses the results of round ``n-1``'s run exactly as
  a replay does (``replay_of``), so only the new step calls a model.
* When the planner says the goal is met (``done``), or after ``max_rounds`` rounds, the run
  ``<id>`` itself executes the whole workflow: every step done so far reused from the last
  round, plus a final **synthesis** step that sees all their outputs. Its output is the
  final answer; ``agentic show <id>`` shows every step.

A new step without ``depends_on`` sees every step done before it (as in a sequential
workflow). Each round the planner returns the remaining plan; the first of its steps that
has not run yet is executed (steps it repeats from earlier rounds count as done), so a
planner that always answers with its whole plan still advances one step per round.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentic import names
from agentic.backends import EventCallback
from agentic.catalog import Catalog
from agentic.contracts import (
    PlannerOptions,
    ReplaySource,
    RunEvent,
    RunRecord,
    RunRequest,
    StepState,
    WorkflowConfig,
    step_reused,
    utcnow,
)
from agentic.errors import ConfigError, PlanError
from agentic.ids import check_id, new_run_id
from agentic.planning.knowledge import gather
from agentic.planning.model import PlannerModel
from agentic.planning.plan import Offer, Plan, PlanStep, plan_workflow, run_order, workflow_name
from agentic.planning.planner import ask_for_plan, input_names, planner_provider, run_topic
from agentic.planning.prompt import DoneStep, offer_for, render_prompt
from agentic.planning.records import round_record, unique_id
from agentic.planning.sessions import SessionEntry, add_entry, record_outcome, session_history
from agentic.preparation import add_reviewer
from agentic.review import with_review
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.store import RunStore

PARENT_LABEL = names.ITERATIVE_PARENT_LABEL
ROUND_LABEL = "agentic.round"
SYNTHESIS_ID = "synthesis"
_CREWAI_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_\-]*)\}")


def round_run_id(run_id: str, number: int) -> str:
    """``<run_id>-r<number>``: the run of one round."""
    return check_id(f"{run_id}-r{number}", "round run id")


def literal(text: str) -> str:
    """``text`` with ``{name}`` written ``{ name }``: shown as is, never interpolated."""
    return _CREWAI_PLACEHOLDER.sub(lambda m: "{ " + m.group(1) + " }", text)


def run_iterative(
    request: RunRequest,
    settings: Settings,
    on_event: EventCallback,
    *,
    catalog: Catalog,
    store: RunStore,
    on_start: Callable[[RunRecord], None] | None = None,
) -> RunRecord:
    """Plan and run ``request.goal`` round by round; return the finished run.

    Args:
        request: A goal request with ``planner.iterative`` (``max_rounds``, ``session``).
        settings: Planner provider, step limit, backend default.
        on_event: Receives the events of every step as it runs (round runs included).
        catalog: Agents and MCP providers to plan with.
        store: The run store.
        on_start: Called with the new run before the first round.

    Returns:
        The run ``request.run_id`` (or a new id): succeeded with the synthesis output, or
        failed (a plan that stayed invalid, a failed step) with the reason.

    Raises:
        ConfigError: planning cannot start (no planner provider, a missing API key).
    """
    run_id = check_id(request.run_id, "run id") if request.run_id else new_run_id()
    if store.run_exists(run_id):
        return store.read_run(run_id)
    _check_request(request, settings)
    request = request.model_copy(update={"run_id": run_id})
    rounds = _Rounds(request, settings, catalog, store, on_event)
    if not store.create_run(rounds.record):
        return store.read_run(run_id)
    if on_start is not None:
        on_start(rounds.record)
    try:
        finished = rounds.run()
    except KeyboardInterrupt:
        from agentic.recording.cancel import CANCELLED_BY_USER, mark_cancelled

        finished = mark_cancelled(store, run_id, CANCELLED_BY_USER)
    except ConfigError as exc:  # a round could not start: the run must not stay "running"
        rounds.fail(f"cannot continue: {exc}", stopped="error")
        raise
    record_outcome(store, finished)
    return finished


def _check_request(request: RunRequest, settings: Settings) -> None:
    """Refuse, before the run exists, what would fail every round (as ``prepare_run`` does)."""
    from agentic.backends import get_backend
    from agentic.preparation import INPUT_NAME

    for name in request.inputs:
        if not INPUT_NAME.fullmatch(name):
            raise ConfigError(
                f"input name {name!r}: use a letter or underscore followed by letters, "
                "digits or underscores (it becomes a {name} placeholder)"
            )
    get_backend(request.backend or settings.execution_backend)  # unknown or not installed


class _Rounds:
    """One iterative run: the planner conversation, the steps done, the round runs."""

    def __init__(
        self,
        request: RunRequest,
        settings: Settings,
        catalog: Catalog,
        store: RunStore,
        on_event: EventCallback,
    ) -> None:
        assert request.goal is not None and request.run_id is not None
        self.goal = request.goal
        self.options = request.planner or PlannerOptions(iterative=True)
        self.settings, self.store, self.on_event = settings, store, on_event
        backend = request.backend or settings.execution_backend
        provider = planner_provider(catalog, settings)
        self.offer: Offer = offer_for(
            catalog,
            backend=backend,
            exclude_agents={provider.id},
            inputs=input_names(request),
            max_steps=settings.planner_max_steps,
            settings=settings,
        )
        session = self.options.session
        self.history = session_history(store, session) if session else []
        self.catalog = catalog
        self.review = request.review
        self.feedback: dict[str, Any] | None = None  # the last failed review, for the planner
        self.reviewed_answer: PlanStep | None = None
        self.knowledge = (
            gather(self.goal, self.offer, settings, store) if self.options.knowledge else None
        )
        self.model = PlannerModel(
            provider, goal=self.goal, topic=run_topic(request), env=catalog.environ
        )
        self.done: list[DoneStep] = []
        self.last_run: str | None = None
        self.plan: dict[str, Any] = {
            "mode": "iterative",
            "goal": self.goal,
            "planner": provider.id,
            "backend": backend,
            "session": session,
            "max_rounds": self.options.max_rounds,
            "rounds": [],
        }
        self.record = RunRecord(
            run_id=request.run_id,
            request=request,
            inputs=dict(request.inputs),
            backend=backend,
            labels=dict(request.labels),
            status="running",
            plan=self.plan,
        )

    # --- the loop -------------------------------------------------------------------------

    def run(self) -> RunRecord:
        """Every round, then the synthesis; the finished record.

        With a review (``--review``), the synthesis is first run with its review as a
        round of its own; an answer the reviewer scores below ``min_score`` sends the
        planner, with the reviewer's reasons, into another round while rounds are left.
        """
        number = 0
        while True:
            final: Plan | None = None
            self.plan["stopped"] = "max_rounds"
            while number < self.options.max_rounds:
                number += 1
                try:
                    plan = self._plan_round(number)
                except PlanError as exc:
                    return self.fail(f"round {number}: {exc}", stopped="invalid_plan")
                step = None if plan.done else self._next_step(plan)
                if step is None:  # the planner said so, or every step it plans has run
                    final, self.plan["stopped"] = plan, "done" if plan.done else "plan_complete"
                    break
                outcome = self._run_round(number, step)
                if outcome.status != "succeeded":
                    return self._end_early(number, outcome)
            if self.review is None:
                return self._synthesize(final)
            verdict = self._review_round(number, final)
            if verdict is None or verdict.status == "succeeded":
                return self._synthesize(final)
            if verdict.review is None or verdict.review.get("passed") or verdict.status != "failed":
                return self._end_early(number, verdict)
            if number >= self.options.max_rounds:
                return self.fail(verdict.error or "the review failed", stopped="review")
            self.feedback = verdict.review

    def _review_round(self, number: int, final: Plan | None) -> RunRecord | None:
        """Run the synthesis with its review as run ``<id>-r<n>-review``, reusing the
        rounds' results; None when there is nothing to synthesize (the caller says so)."""
        from agentic.replay import execute_reusing

        step = self._synthesis_step(final)
        if step is None or self.review is None:
            return None
        workflow = self._reviewed(self._workflow([*self._done_steps(), step]))
        run_id = check_id(f"{round_run_id(self.record.run_id, number)}-review", "round run id")
        child = self._round_run(run_id, number, workflow, step)
        reviews = self.plan.setdefault("reviews", [])
        reviews.append({"round": number, "answer": step.id, "run_id": run_id})
        self._save()
        self.store.create_run(child)
        finished = execute_reusing(child, self.store, self.settings, self._forward)
        reviews[-1].update(status=finished.status, review=finished.review)
        if finished.status == "succeeded":
            self.last_run, self.reviewed_answer = run_id, step
        self._save()
        return finished

    def _round_run(
        self, run_id: str, number: int, workflow: WorkflowConfig, step: PlanStep
    ) -> RunRecord:
        """The pending record of a round's run: the steps done so far reused from the last
        round, ``step`` (and what follows it) run."""
        source = ReplaySource(run_id=self.last_run, from_step=step.id) if self.last_run else None
        labels = {**self.record.labels, PARENT_LABEL: self.record.run_id, ROUND_LABEL: str(number)}
        request = RunRequest(
            run_id=run_id,
            workflow=workflow,
            inputs=dict(self.record.inputs),
            backend=self.record.backend,
            labels=labels,
            replay_of=source,
        )
        return round_record(request, workflow, plan={"iterative_of": self.record.run_id})

    def _reviewed(self, workflow: WorkflowConfig) -> WorkflowConfig:
        assert self.review is not None
        with_reviewer = add_reviewer(workflow, self.review.provider, self.catalog)
        return with_review(with_reviewer, self.review, goal=self.goal)

    def _plan_round(self, number: int) -> Plan:
        prompt = render_prompt(
            self.goal,
            self.offer,
            session_history=self.history,
            progress=self.done,
            knowledge=self.knowledge,
            review=self.feedback,
        )
        entry: dict[str, Any] = {"round": number, "prompt": prompt, "replies": [], "plan": None}
        self.plan["rounds"].append(entry)
        self.model.set_round(number)
        try:
            plan = ask_for_plan(
                self.model, prompt, self.offer, entry["replies"], done_steps=self._done_ids()
            )
        finally:
            self._save()
        entry["plan"] = plan.model_dump(mode="json")
        self.plan["final_answer"] = plan.final_answer if plan.done else None
        return plan

    def _next_step(self, plan: Plan) -> PlanStep | None:
        """The first step of ``plan`` not done yet; it sees every done step by default."""
        done = self._done_ids()
        by_id = {s.id: s for s in plan.steps}
        for step_id in run_order(plan.steps):
            if step_id not in done:
                step = by_id[step_id]
                if step.depends_on is None:
                    step = step.model_copy(update={"depends_on": sorted(done, key=self._order)})
                return step
        return None

    def _run_round(self, number: int, step: PlanStep) -> RunRecord:
        from agentic.replay import execute_reusing

        workflow = self._workflow([*self._done_steps(), step])
        run_id = round_run_id(self.record.run_id, number)
        child = self._round_run(run_id, number, workflow, step)
        self.plan["rounds"][-1].update(step=step.id, run_id=run_id)
        self._save()
        self.store.create_run(child)
        finished = execute_reusing(child, self.store, self.settings, self._forward)
        self.plan["rounds"][-1]["status"] = finished.status
        if finished.status == "succeeded":
            result = self.store.read_result(run_id, step.id)
            self.done.append(DoneStep(step, result.output if result else ""))
            self.last_run = run_id
        return finished

    # --- the end --------------------------------------------------------------------------

    def _synthesize(self, final: Plan | None) -> RunRecord:
        from agentic.replay import execute_reusing

        step = self.reviewed_answer or self._synthesis_step(final)
        if step is None:
            return self.fail(
                "the planner said the goal was met before any step ran, and gave no step "
                "to write the answer",
                stopped="done",
            )
        workflow = self._workflow([*self._done_steps(), step])
        source = ReplaySource(run_id=self.last_run, from_step=step.id) if self.last_run else None
        if self.reviewed_answer is not None and self.last_run is not None:
            workflow = self._reviewed(workflow)  # every step, the review too, from that round
            source = ReplaySource(run_id=self.last_run)
        self.plan["synthesis"] = step.id
        self.record = self.record.model_copy(
            update={
                "request": self.record.request.model_copy(update={"replay_of": source}),
                "workflow": workflow,
                "steps": [StepState(step_id=s) for s in workflow.task_sequence],
                "plan": self.plan,
                # Handed to its backend like a new run: the nats coordinator starts only a
                # pending run that already exists in the store.
                "status": "pending",
            }
        )
        self._add_to_session(workflow)
        self.store.write_run(self.record)
        return execute_reusing(self.record, self.store, self.settings, self._forward)

    def _synthesis_step(self, final: Plan | None) -> PlanStep | None:
        done = self._done_ids()
        given = [s for s in (final.steps if final else []) if s.id not in done]
        deps = sorted(done, key=self._order)
        if given:
            step = given[0]
            return (
                step
                if step.depends_on is not None
                else step.model_copy(update={"depends_on": deps})
            )
        if not self.done:
            return None
        draft = self.plan.get("final_answer")
        text = (
            "Combine the outputs of the earlier steps into one complete final answer to this "
            f"goal: {literal(self.goal)}"
        )
        if draft:
            text += f"\n\nThe planner's draft answer, to check and complete:\n{literal(draft)}"
        return PlanStep(
            id=unique_id(SYNTHESIS_ID, done),
            agent_provider_id=self.done[-1].step.agent_provider_id,
            description=text,
            expected_output="The final answer to the goal.",
            depends_on=deps,
        )

    def _end_early(self, number: int, outcome: RunRecord) -> RunRecord:
        if outcome.status == "cancelled":
            from agentic.recording.cancel import mark_cancelled

            self._save()
            return mark_cancelled(self.store, self.record.run_id, outcome.error or "cancelled")
        reason = f"round {number} (run {outcome.run_id}) failed: {outcome.error or 'no error'}"
        return self.fail(reason, stopped="step_failed")

    def fail(self, message: str, *, stopped: str) -> RunRecord:
        """Record the run failed with ``message``; ``stopped`` says why the rounds ended."""
        self.plan["stopped"] = stopped
        now = utcnow()
        self.record = self.record.model_copy(
            update={
                "status": "failed",
                "error": message,
                "plan": self.plan,
                "updated_at": now,
                "finished_at": now,
            }
        )
        self.store.write_run(self.record)
        return self.record

    # --- helpers --------------------------------------------------------------------------

    def _forward(self, event: RunEvent) -> None:
        """Pass on step events as they happen; not reused steps, not the round runs' ends."""
        if event.step_id is None and event.run_id != self.record.run_id:
            return
        if step_reused(event):
            return
        self.on_event(event)

    def _workflow(self, steps: list[PlanStep]) -> WorkflowConfig:
        return plan_workflow(
            steps,
            self.offer,
            name=workflow_name(self.goal),
            topic=run_topic(self.record.request),
            description=self.goal,
        )

    def _done_steps(self) -> list[PlanStep]:
        return [d.step for d in self.done]

    def _done_ids(self) -> list[str]:
        return [d.step.id for d in self.done]

    def _order(self, step_id: str) -> int:
        return self._done_ids().index(step_id)

    def _add_to_session(self, workflow: WorkflowConfig) -> None:
        session = self.options.session
        if session is None:
            return
        steps = [f"{t.id} ({t.agent_provider_id})" for t in workflow.tasks]
        entry = SessionEntry(run_id=self.record.run_id, goal=self.goal, steps=steps)
        add_entry(self.store, session, entry)

    def _save(self) -> None:
        self.plan["usage"] = self.model.usage().model_dump()
        self.record = self.record.model_copy(update={"plan": self.plan, "updated_at": utcnow()})
        self.store.write_run(self.record)
