"""Checks of a resolved workflow and the step graph it implies (docs/architecture.md).

Sequence vs. DAG: when no task has ``depends_on``, each step depends on the one before it
in ``task_sequence`` and sees the outputs of all earlier steps (CrewAI's sequential
process). When any task has ``depends_on``, a task without it is a root and a step sees
only its direct dependencies (CrewAI's ``Task.context``). Like CrewAI, a dependency must
come earlier in ``task_sequence``, so the sequence is always a valid execution order.
"""

from __future__ import annotations

from collections import Counter

from agentic.catalog.files import pool_issue
from agentic.contracts import MCPProvider, TaskConfig, WorkflowConfig
from agentic.errors import CatalogError

Issue = tuple[str | None, str]
"""``(field, message)`` of one problem in a workflow."""


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
    """Every problem of a resolved workflow, in a stable order."""
    issues = _duplicate_issues(wf)
    issues += _sequence_issues(wf)
    issues += _reference_issues(wf)
    issues += _dependency_issues(wf)
    return issues


def step_dependencies(wf: WorkflowConfig) -> dict[str, list[str]]:
    """The steps each step waits for, in ``task_sequence`` order.

    Explicit ``depends_on`` when any task sets it, else the chain of the sequence.
    """
    if wf.uses_depends_on:
        return {sid: list(wf.task(sid).depends_on or []) for sid in wf.task_sequence}
    return {sid: wf.task_sequence[i - 1 : i] for i, sid in enumerate(wf.task_sequence)}


def context_steps(wf: WorkflowConfig) -> dict[str, list[str]]:
    """The steps whose outputs each step sees (all earlier ones, or its direct dependencies)."""
    if wf.uses_depends_on:
        return step_dependencies(wf)
    return {sid: wf.task_sequence[:i] for i, sid in enumerate(wf.task_sequence)}


def task_mcp_providers(wf: WorkflowConfig, task: TaskConfig) -> list[MCPProvider]:
    """A task's MCP providers: unset means all of the workflow's, ``[]`` means none."""
    if task.mcp_providers is None:
        return list(wf.mcp_providers)
    return [wf.mcp_provider(mid) for mid in task.mcp_providers]


def _task_field(wf: WorkflowConfig, task_id: str, name: str) -> str:
    index = next(i for i, t in enumerate(wf.tasks) if t.id == task_id)
    return f"workflow.tasks[{index}].{name}"


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


def _sequence_issues(wf: WorkflowConfig) -> list[Issue]:
    field = "workflow.task_sequence"
    task_ids = [t.id for t in wf.tasks]
    issues: list[Issue] = []
    unknown = [sid for sid in wf.task_sequence if sid not in task_ids]
    if unknown:
        issues.append((field, f"names unknown task(s) {_names(unknown)}"))
    twice = [sid for sid, n in Counter(wf.task_sequence).items() if n > 1]
    if twice:
        issues.append((field, f"lists task(s) {_names(twice)} more than once"))
    missing = list(dict.fromkeys(tid for tid in task_ids if tid not in wf.task_sequence))
    if missing:
        issues.append((field, f"does not list task(s) {_names(missing)}"))
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
    return issues


def _dependency_issues(wf: WorkflowConfig) -> list[Issue]:
    task_ids = {t.id for t in wf.tasks}
    issues: list[Issue] = []
    for i, task in enumerate(wf.tasks):
        for dep in task.depends_on or []:
            if dep not in task_ids:
                issues.append((f"workflow.tasks[{i}].depends_on", f"unknown task {dep!r}"))
    cycles = _cycles(wf)
    for cycle in cycles:
        issues.append(
            (_task_field(wf, cycle[0], "depends_on"), "depends_on cycle: " + " -> ".join(cycle))
        )
    if not cycles:
        issues += _order_issues(wf)
    return issues


def _order_issues(wf: WorkflowConfig) -> list[Issue]:
    # Unique sequence positions only; duplicates are reported by _sequence_issues.
    position = {sid: i for i, sid in reversed(list(enumerate(wf.task_sequence)))}
    issues: list[Issue] = []
    for i, task in enumerate(wf.tasks):
        for dep in task.depends_on or []:
            if dep in position and task.id in position and position[dep] > position[task.id]:
                issues.append(
                    (
                        f"workflow.tasks[{i}].depends_on",
                        f"depends on {dep!r}, which comes later in task_sequence",
                    )
                )
    return issues


def _cycles(wf: WorkflowConfig) -> list[list[str]]:
    """Each distinct ``depends_on`` cycle as ``[a, b, …, a]``."""
    graph: dict[str, list[str]] = {}
    for t in wf.tasks:  # the first of duplicate ids wins, as in WorkflowConfig.task()
        graph.setdefault(t.id, [d for d in t.depends_on or [] if d != t.id])
    cycles = [[t.id, t.id] for t in wf.tasks if t.id in (t.depends_on or [])]
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for dep in graph.get(node, []):
            if state.get(dep) == 1:
                cycles.append([*path[path.index(dep) :], dep])
            elif dep in graph and dep not in state:
                visit(dep)
        path.pop()
        state[node] = 2

    for task in wf.tasks:
        if task.id not in state:
            visit(task.id)
    return cycles


def _names(ids: list[str]) -> str:
    return ", ".join(repr(i) for i in ids)
