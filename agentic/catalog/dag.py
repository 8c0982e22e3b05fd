"""Checks of a resolved workflow: its step graph (:mod:`agentic.graph`, which defines what
sequence and DAG mean) and its references to providers, every problem named by its field.
"""

from __future__ import annotations

from agentic.catalog.files import pool_issue
from agentic.contracts import MCPProvider, TaskConfig, WorkflowConfig
from agentic.errors import CatalogError
from agentic.graph import Issue, dependency_issues, sequence_issues
from agentic.hierarchical import CREW_STEP, crew_step, crew_view


def check_workflow(wf: WorkflowConfig, *, source: str | None = None) -> None:
    """Raise the first problem of ``wf`` (unknown ids, cycles, bad sequence).

    Raises:
        CatalogError: naming ``source`` (the workflow's file, if any) and the field.
    """
    issues = workflow_issues(wf)
    if issues:
        field, message = issues[0]
        raise CatalogError(message, file=source, field=field)


def workflow_issues(wf: WorkflowConfig) -> list[Issue]:
    """Every problem of a resolved workflow, in a stable order: the step graph's
    (:mod:`agentic.graph`) and the references to providers."""
    if wf.crew is not None:
        return _crew_issues(wf)
    issues = _duplicate_issues(wf)
    issues += sequence_issues(wf)
    issues += _reference_issues(wf)
    issues += dependency_issues(wf)
    return issues


def task_mcp_providers(wf: WorkflowConfig, task: TaskConfig) -> list[MCPProvider]:
    """A task's MCP providers: unset means all of the workflow's, ``[]`` means none."""
    if task.mcp_providers is None:
        return list(wf.mcp_providers)
    return [wf.mcp_provider(mid) for mid in task.mcp_providers]


def task_tools(wf: WorkflowConfig, task: TaskConfig) -> list[str]:
    """A task's Python tools, by id: unset means the workflow's, ``[]`` means none."""
    return list(dict.fromkeys(wf.tools if task.tools is None else task.tools))


CREW_TASK_FIELDS = frozenset(
    {"id", "agent_provider_id", "description", "expected_output", "mcp_providers"}
    | {"depends_on", "timeout_s", "retries", "pool"}
)
"""What a task of a hierarchical crew may set (what its one step honours)."""


def _crew_issues(wf: WorkflowConfig) -> list[Issue]:
    """The problems of a hierarchical workflow: its crew's tasks checked as a workflow's
    (the fields the file wrote), then what is the crew's own."""
    view = crew_view(wf)
    assert view is not None and wf.crew is not None
    crew = wf.crew
    issues = _duplicate_issues(view) + sequence_issues(view) + _reference_issues(view)
    issues += dependency_issues(view)
    agents = {p.id for p in wf.agent_providers}
    if crew.manager_provider not in agents:
        manager = crew.manager_provider
        issues.append(("workflow.manager_provider", f"unknown agent provider {manager!r}"))
    for i, coworker in enumerate(crew.coworkers):
        if coworker not in agents or coworker == crew.manager_provider:
            issues.append((f"workflow.crew.coworkers[{i}]", f"not a coworker: {coworker!r}"))
    if not crew.coworkers:
        issues.append(
            (
                "workflow.agent_providers",
                f"a hierarchical crew needs a coworker for its manager "
                f"{crew.manager_provider!r} to delegate to: list another agent provider",
            )
        )
    issues += _crew_task_issues(wf)
    step = next((t for t in wf.tasks if t.id == CREW_STEP), None)
    if step is None or step != crew_step(wf) or wf.task_sequence[:1] != [CREW_STEP]:
        issues.append(("workflow.tasks", f"a hierarchical workflow's first step is {CREW_STEP!r}"))
    return issues


def _crew_task_issues(wf: WorkflowConfig) -> list[Issue]:
    """Task settings the crew's one step cannot honour: ask rather than ignore them."""
    assert wf.crew is not None
    issues: list[Issue] = []
    if getattr(wf, "tools", None):
        issues.append(("workflow.tools", "not supported in a hierarchical crew yet"))
    pools: dict[str, int] = {}
    for i, task in enumerate(wf.crew.tasks):
        for name in sorted(task.model_fields_set - CREW_TASK_FIELDS):
            if getattr(task, name) is not None:
                message = "not supported in a hierarchical crew yet (its tasks run as one step)"
                issues.append((f"workflow.tasks[{i}].{name}", message))
        if task.pool is not None:
            pools.setdefault(task.pool, i)
    if len(pools) > 1:
        named = ", ".join(repr(p) for p in pools)
        message = f"a hierarchical crew runs as one step, in one pool: its tasks name {named}"
        issues.append((f"workflow.tasks[{list(pools.values())[1]}].pool", message))
    return issues


def _duplicate_issues(wf: WorkflowConfig) -> list[Issue]:
    issues: list[Issue] = []
    groups = (
        ("tasks", "task", [t.id for t in wf.tasks]),
        ("agent_providers", "agent provider", [p.id for p in wf.agent_providers]),
        ("mcp_providers", "MCP provider", [p.id for p in wf.mcp_providers]),
    )
    for name, what, ids in groups:
        seen: set[str] = set()
        for index, item_id in enumerate(ids):
            if item_id in seen:
                issues.append((f"workflow.{name}[{index}].id", f"duplicate {what} id {item_id!r}"))
            seen.add(item_id)
    return issues


def _reference_issues(wf: WorkflowConfig) -> list[Issue]:
    agents = {p.id for p in wf.agent_providers}
    mcps = {p.id for p in wf.mcp_providers}
    issues: list[Issue] = []
    for i, task in enumerate(wf.tasks):
        if task.agent_provider_id not in agents:
            issues.append(
                (
                    f"workflow.tasks[{i}].agent_provider_id",
                    f"unknown agent provider {task.agent_provider_id!r}",
                )
            )
        for j, mid in enumerate(task.mcp_providers or []):
            if mid not in mcps:
                issues.append(
                    (
                        f"workflow.tasks[{i}].mcp_providers[{j}]",
                        f"MCP provider {mid!r} is not one of the workflow's mcp_providers",
                    )
                )
        pool = pool_issue(task.pool, f"workflow.tasks[{i}].pool")
        if pool is not None:
            issues.append(pool)
    if wf.review is not None and wf.review.provider not in agents:
        issues.append(
            ("workflow.review.provider", f"unknown agent provider {wf.review.provider!r}")
        )
    return issues + _fallback_issues(wf, agents)


def _fallback_issues(wf: WorkflowConfig, agents: set[str]) -> list[Issue]:
    """A fallback that names no provider the workflow can embed (the resolver pulls catalog
    providers in, so one that is still missing is in neither)."""
    issues: list[Issue] = []
    for i, provider in enumerate(wf.agent_providers):
        for j, fallback in enumerate(provider.fallback):
            if fallback not in agents:
                issues.append(
                    (
                        f"workflow.agent_providers[{i}].fallback[{j}]",
                        f"agent provider {provider.id!r} falls back to unknown agent "
                        f"provider {fallback!r}",
                    )
                )
    return issues


def _names(ids: list[str]) -> str:
    return ", ".join(repr(i) for i in ids)
