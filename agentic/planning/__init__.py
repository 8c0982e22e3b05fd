"""The dynamic planner: a goal becomes a workflow built from the catalogs.

Nothing here imports CrewAI at import time: the planner model is built through
:mod:`agentic.runtime` only when a goal is planned, so plans can be parsed, checked and
mapped (and this package imported by the ``nats`` coordinator) without it.

Public API::

    plan_goal(request, *, catalog, settings, store=None) -> PlannedWorkflow  # submit's seam
    build_planner_prompt(goal, catalog, *, backend, env, session_history) -> str
    run_iterative(request, settings, on_event, *, catalog, store, on_start=None) -> RunRecord
    Plan, PlanStep, parse_plan, plan_problems, plan_workflow                   # the plan format
    read_session / session_history / record_outcome                          # sessions
"""

from agentic.planning.iterative import run_iterative
from agentic.planning.plan import (
    Offer,
    Plan,
    PlanStep,
    PlanSyntaxError,
    parse_plan,
    plan_problems,
    plan_workflow,
)
from agentic.planning.planner import plan_goal, planner_provider
from agentic.planning.prompt import DoneStep, build_planner_prompt, offer_for, render_prompt
from agentic.planning.records import failed_plan_record, planner_options, review_options
from agentic.planning.sessions import (
    Session,
    SessionEntry,
    read_session,
    record_outcome,
    session_history,
)

__all__ = [
    "DoneStep",
    "Offer",
    "Plan",
    "PlanStep",
    "PlanSyntaxError",
    "Session",
    "SessionEntry",
    "build_planner_prompt",
    "failed_plan_record",
    "offer_for",
    "parse_plan",
    "plan_goal",
    "plan_problems",
    "plan_workflow",
    "planner_options",
    "planner_provider",
    "read_session",
    "record_outcome",
    "render_prompt",
    "review_options",
    "run_iterative",
    "session_history",
]
