"""The step graph of a workflow, in one place: which steps a step waits for, whose outputs it
sees, which step's output is the run's, and whether every step can run at all.

Two modes, decided by the workflow as a whole (docs/architecture.md):

* **Sequence** (no task sets ``depends_on``): each step waits for the step before it in
  ``task_sequence`` and, like CrewAI's sequential process, sees the outputs of *all* earlier
  steps.
* **DAG** (any task sets ``depends_on``): the graph is explicit. A task without ``depends_on``
  is a root, and a step sees only the outputs of its direct dependencies (in the order
  ``depends_on`` lists them, a repeat counted once), like CrewAI's ``Task.context``. Like
  CrewAI, a dependency must come earlier in ``task_sequence``, so the sequence is always a
  valid execution order.

The catalog (validation), materialization and the coordinator's state machine all read the
graph from here; it depends on nothing but the contracts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from agentic.contracts import WorkflowConfig
from agentic.errors import CatalogError

Issue = tuple[str | None, str]
"""``(field, message)`` of one problem in a workflow."""


def dependencies(wf: WorkflowConfig) -> dict[str, list[str]]:
    """The steps each step waits for, keyed in ``task_sequence`` order.

    Raises:
        CatalogError: the graph cannot run (see :func:`check_graph`).
    """
    check_graph(wf)
    order = list(wf.task_sequence)
    if not wf.uses_depends_on:
        return {step: order[i - 1 : i] for i, step in enumerate(order)}
    tasks = {task.id: task for task in wf.tasks}
    return {step: list(dict.fromkeys(tasks[step].depends_on or [])) for step in order}


def context(wf: WorkflowConfig) -> dict[str, list[str]]:
    """The steps whose outputs each step sees, keyed in ``task_sequence`` order."""
    deps = dependencies(wf)
    if wf.uses_depends_on:
        return deps
    order = list(wf.task_sequence)
    return {step: order[:i] for i, step in enumerate(order)}


def dependents(deps: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """The inverse of :func:`dependencies`: the steps that wait for each step."""
    out: dict[str, list[str]] = {step: [] for step in deps}
    for step, waits_for in deps.items():
        for dep in waits_for:
            out[dep].append(step)
    return out


def final_step(wf: WorkflowConfig) -> str:
    """The step whose output is the run's output: the last sink in ``task_sequence`` order,
    or the step a post-run review reviews (the review step is a sink after it)."""
    review = wf.review
    if review is not None and review.of is not None and review.step in wf.task_sequence:
        return review.of
    waited_for = dependents(dependencies(wf))
    sinks = [step for step in wf.task_sequence if not waited_for[step]]
    return sinks[-1]


def check_graph(wf: WorkflowConfig, *, source: str | None = None) -> None:
    """Refuse a workflow whose steps cannot all run: a bad sequence, unknown dependencies,
    a cycle, or a dependency that comes later in the sequence.

    Raises:
        CatalogError: the first problem, naming ``source`` (a file, if any) and the field.
    """
    issues = sequence_issues(wf) + dependency_issues(wf)
    if issues:
        field, message = issues[0]
        raise CatalogError(message, file=source, field=field)


def sequence_issues(wf: WorkflowConfig) -> list[Issue]:
    """``task_sequence`` names unknown tasks, repeats one, or leaves one out."""
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


def dependency_issues(wf: WorkflowConfig) -> list[Issue]:
    """``depends_on`` names unknown tasks, forms a cycle, or points later in the sequence."""
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
    # Unique sequence positions only; duplicates are reported by sequence_issues.
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


def _task_field(wf: WorkflowConfig, task_id: str, name: str) -> str:
    index = next(i for i, t in enumerate(wf.tasks) if t.id == task_id)
    return f"workflow.tasks[{index}].{name}"


def _names(ids: list[str]) -> str:
    return ", ".join(repr(i) for i in ids)
