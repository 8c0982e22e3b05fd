"""Checks of a resolved workflow: its step graph (:mod:`agentic.graph`, which defines what
sequence and DAG mean) and its references to providers, every problem named by its field.
"""

from __future__ import annotations

from agentic.catalog.files import pool_issue
from agentic.contracts import MCPProvider, TaskConfig, WorkflowConfig
from agentic.errors import CatalogError
from agentic.graph import Issue, dependency_issues, sequence_issues


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
