"""Which steps a step waits for, and whose outputs it sees (docs/architecture.md).

Two modes, decided by the workflow as a whole:

* **Sequence** (no task sets ``depends_on``): each step waits for the step before it in
  ``task_sequence`` and, like CrewAI's sequential process, sees the outputs of *all* earlier
  steps.
* **DAG** (any task sets ``depends_on``): the graph is explicit. A task without ``depends_on``
  is a root, and a step sees only the outputs of its direct dependencies, like CrewAI's
  ``Task.context``.

These mirror ``agentic.catalog.step_dependencies`` / ``context_steps``; the coordinator keeps
its own copy so that it depends on nothing but the contracts.
"""

from __future__ import annotations

from collections.abc import Mapping

from agentic.contracts import WorkflowConfig
from agentic.errors import CatalogError


def dependencies(wf: WorkflowConfig) -> dict[str, list[str]]:
    """The steps each step waits for, keyed in ``task_sequence`` order.

    Raises:
        CatalogError: ``task_sequence`` or a ``depends_on`` names an unknown task, repeats a
            step, or the dependencies form a cycle (the run could never finish).
    """
    check_graph(wf)
    order = list(wf.task_sequence)
    if not wf.uses_depends_on:
        return {step: order[i - 1 : i] for i, step in enumerate(order)}
    return {step: _unique(wf.task(step).depends_on or []) for step in order}


def context(wf: WorkflowConfig) -> dict[str, list[str]]:
    """The steps whose outputs each step sees, keyed in ``task_sequence`` order."""
    deps = dependencies(wf)
    if wf.uses_depends_on:
        # In the order depends_on lists them, as CrewAI orders Task.context.
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
    """The step whose output is the run's output: the last sink in ``task_sequence`` order."""
    waited_for = dependents(dependencies(wf))
    sinks = [step for step in wf.task_sequence if not waited_for[step]]
    return sinks[-1]


def check_graph(wf: WorkflowConfig) -> None:
    """Reject a workflow whose steps cannot all run: unknown ids, repeats or cycles.

    Raises:
        CatalogError: naming the field and the offending step ids.
    """
    known = {task.id for task in wf.tasks}
    order = list(wf.task_sequence)
    unknown = [step for step in order if step not in known]
    if unknown:
        raise CatalogError(f"unknown task ids {unknown}", field="task_sequence")
    repeated = sorted({step for step in order if order.count(step) > 1})
    if repeated:
        raise CatalogError(f"steps listed more than once: {repeated}", field="task_sequence")
    for task in wf.tasks:
        if task.id not in order:
            continue
        missing = [d for d in task.depends_on or [] if d not in order]
        if missing:
            raise CatalogError(
                f"depends on steps not in task_sequence: {missing}",
                field=f"tasks.{task.id}.depends_on",
            )
    cycle = _steps_in_cycles(wf)
    if cycle:
        raise CatalogError(f"dependency cycle through steps {cycle}", field="depends_on")


def _steps_in_cycles(wf: WorkflowConfig) -> list[str]:
    """Steps that can never become ready (Kahn's algorithm leaves them over)."""
    if not wf.uses_depends_on:
        return []
    waits = {step: set(wf.task(step).depends_on or []) for step in wf.task_sequence}
    done: set[str] = set()
    progress = True
    while progress:
        ready = [s for s, w in waits.items() if s not in done and w <= done]
        done.update(ready)
        progress = bool(ready)
    return [step for step in wf.task_sequence if step not in done]


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
