"""Goal -> plan -> :class:`WorkflowConfig`: what ``agentic run --goal`` does before running.

:func:`plan_goal` is the goal planner :mod:`agentic.preparation` calls (and the ``nats``
coordinator, for goal requests). It asks the planner provider
(``AGENTIC_PLANNER_AGENT_PROVIDER``, default ``planner``) for a :class:`Plan`, checks the
reply, asks **once** more with the list of problems when the reply is unusable, and maps the
plan onto a workflow. Every reply is kept in the planning record that goes to ``run.json``
``plan``; when the second reply is unusable too, :class:`~agentic.errors.PlanError` carries
that record so the run is recorded as failed with the raw output to inspect.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from agentic.catalog import Catalog, check_workflow
from agentic.contracts import AgentProvider, PlannerOptions, RunRequest, WorkflowConfig
from agentic.errors import CatalogError, ConfigError, PlanError
from agentic.planning.knowledge import gather
from agentic.planning.model import PlannerModel, first_messages, repair_messages
from agentic.planning.plan import (
    Offer,
    Plan,
    PlanSyntaxError,
    parse_plan,
    plan_problems,
    plan_workflow,
    workflow_name,
)
from agentic.planning.prompt import offer_for, render_prompt
from agentic.planning.sessions import add_entry, entry_for, session_history
from agentic.preparation import PlannedWorkflow
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.store import RunStore


def planner_provider(catalog: Catalog, settings: Settings) -> AgentProvider:
    """The agent provider that plays the planner.

    Raises:
        ConfigError: it is not in the catalog.
    """
    provider_id = settings.planner_agent_provider
    provider = catalog.agent_providers.get(provider_id)
    if provider is None:
        known = ", ".join(sorted(catalog.agent_providers)) or "none"
        raise ConfigError(
            f"the planner agent provider {provider_id!r} (AGENTIC_PLANNER_AGENT_PROVIDER) is "
            f"not in the catalog (agent providers: {known})"
        )
    return provider


def run_topic(request: RunRequest) -> str:
    """A goal run's topic: the ``topic`` input, else the goal itself."""
    return request.inputs.get("topic") or request.goal or ""


def input_names(request: RunRequest) -> tuple[str, ...]:
    """The placeholders a planned step may use: ``topic`` and the request's inputs."""
    return tuple(sorted({"topic", *request.inputs}))


def ask_for_plan(
    model: PlannerModel,
    prompt: str,
    offer: Offer,
    replies: list[dict[str, Any]],
    *,
    done_steps: Collection[str] = (),
) -> Plan:
    """Ask ``model`` for a plan; repair once; append every reply to ``replies``.

    Each reply is recorded as ``{"raw": text, "problems": [...]}`` (no problems: accepted).

    Raises:
        PlanError: the reply after the repair request is unusable too (``raw_output`` is it).
        ConfigError: the model cannot be called as configured.
    """
    messages = first_messages(prompt)
    for attempt in (1, 2):
        raw = model.ask(messages)
        plan, problems = check_reply(raw, offer, done_steps=done_steps)
        replies.append({"raw": raw, "problems": problems})
        if plan is not None:
            return plan
        if attempt == 1:
            messages = repair_messages(messages, raw, problems)
    raise PlanError(
        "the planner's reply is not a usable plan after one repair: " + "; ".join(problems),
        raw_output=raw,
    )


def check_reply(
    raw: str, offer: Offer, *, done_steps: Collection[str] = ()
) -> tuple[Plan | None, list[str]]:
    """The plan in ``raw`` and no problems, or None and every problem found."""
    try:
        plan = parse_plan(raw)
    except PlanSyntaxError as exc:
        return None, exc.problems
    problems = plan_problems(plan, offer, done_steps=done_steps)
    return (None, problems) if problems else (plan, [])


def plan_goal(
    request: RunRequest,
    *,
    catalog: Catalog,
    settings: Settings,
    store: RunStore | None = None,
) -> PlannedWorkflow:
    """Plan ``request.goal`` into a workflow (the goal planner of :mod:`agentic.preparation`).

    Args:
        request: A request with a ``goal``; ``planner.session`` adds the session's earlier
            goals to the prompt and this goal to the session; ``backend`` decides which MCP
            providers are offered.
        catalog: Agents and MCP providers to plan with (``required_env`` gated).
        settings: The planner provider, the step limit, the default backend, the store.
        store: Where sessions live (default: ``settings.run_store_url``).

    Returns:
        The workflow, and the planning record for ``run.json`` ``plan``.

    Raises:
        PlanError: the planner's output cannot become a workflow (``plan`` holds the record
            with every raw reply).
        ConfigError: planning cannot start (no planner provider, missing API key, an
            iterative request, which :func:`agentic.planning.run_iterative` runs).
    """
    if request.goal is None:
        raise ConfigError("plan_goal needs a request with a goal")
    options = request.planner or PlannerOptions()
    if options.iterative:
        raise ConfigError(
            "an iterative goal is planned round by round while it runs "
            "(agentic.planning.run_iterative), not planned up front"
        )
    session = options.session
    if (session is not None or options.knowledge) and store is None:
        from agentic.store import open_run_store

        store = open_run_store(settings)
    backend = request.backend or settings.execution_backend
    provider = planner_provider(catalog, settings)
    offer = offer_for(
        catalog,
        backend=backend,
        exclude_agents={provider.id},
        inputs=input_names(request),
        max_steps=settings.planner_max_steps,
        settings=settings,
        workflows=True,
    )
    history = session_history(store, session) if store is not None and session else []
    knowledge = None
    if options.knowledge and store is not None:
        knowledge = gather(request.goal, offer, settings, store)
    prompt = render_prompt(request.goal, offer, session_history=history, knowledge=knowledge)
    record: dict[str, Any] = {
        "mode": "once",
        "goal": request.goal,
        "planner": provider.id,
        "backend": backend,
        "session": session,
        "prompt": prompt,
        "replies": [],
        "plan": None,
    }
    if knowledge is not None:
        record["knowledge"] = {"sources": knowledge.sources(), "flagged": knowledge.flagged()}
    model = PlannerModel(provider, goal=request.goal, topic=run_topic(request), env=catalog.environ)
    try:
        plan = ask_for_plan(model, prompt, offer, record["replies"])
        workflow = workflow_of(plan, offer, request)
    except PlanError as exc:
        record.update(error=str(exc), usage=model.usage().model_dump())
        exc.plan = record
        raise
    record.update(plan=plan.model_dump(mode="json"), usage=model.usage().model_dump())
    if store is not None and session and request.run_id:
        add_entry(store, session, entry_for(request.run_id, request.goal, record["plan"]))
    return PlannedWorkflow(workflow, plan=record)


def workflow_of(plan: Plan, offer: Offer, request: RunRequest) -> WorkflowConfig:
    """The workflow of an accepted plan.

    Raises:
        PlanError: the workflow fails the checks every workflow passes (should not happen
            for a plan :func:`plan_problems` accepted; reported, never crashed on).
    """
    goal = request.goal or ""
    if plan.workflow is not None:  # a catalog workflow, as written, on the goal's topic
        chosen = offer.workflows[plan.workflow].workflow
        return chosen.model_copy(update={"topic": run_topic(request)})
    workflow = plan_workflow(
        plan.steps, offer, name=workflow_name(goal), topic=run_topic(request), description=goal
    )
    try:
        check_workflow(workflow, source="<plan>")
    except CatalogError as exc:
        raise PlanError(f"the plan does not make a valid workflow: {exc}") from exc
    return workflow
