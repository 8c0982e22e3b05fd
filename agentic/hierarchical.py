"""Hierarchical crews (``process: hierarchical``) as one step.

CrewAI's hierarchical process gives every task of a crew to a manager agent, which delegates
the work to the crew's other agents (its coworkers) while it runs. Who does what is decided
at run time, so the crew cannot be split into steps: a hierarchical workflow runs as **one
step**, :data:`CREW_STEP`, on every backend (one worker on ``nats``, one Job on
``kubernetes``, one kickoff on ``inprocess``), and the run store shows that step's one result.

A resolved hierarchical :class:`~agentic.contracts.WorkflowConfig` therefore has one task,
the crew step (:func:`crew_step`), run on the manager's provider, and keeps the tasks of the
file in ``crew`` (:class:`~agentic.contracts.HierarchicalCrew`). Everything that works on
steps (the state machine, retries, timeouts, fallbacks, the review step, replay) sees an
ordinary one-step workflow; what checks or runs the crew's own tasks reads them through
:func:`crew_view`. docs/runtime.md, "Hierarchical crews", says what each field means there.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentic.contracts import HierarchicalCrew, TaskConfig, WorkflowConfig

CREW_STEP = "crew"
"""The id of a hierarchical workflow's one step."""


def crew_view(wf: WorkflowConfig) -> WorkflowConfig | None:
    """The crew's tasks as a workflow of their own (its providers, MCP providers and
    review), for what checks or materializes them; None for a sequential workflow.

    Its fields are the file's: ``tasks[i]`` and ``task_sequence`` are the crew's, so a
    problem found in it names the field the file wrote.
    """
    crew = wf.crew
    if crew is None:
        return None
    return wf.model_copy(
        update={
            "tasks": crew.tasks,
            "task_sequence": crew.task_sequence,
            "process": "sequential",
            "crew": None,
        }
    )


def coworkers(listed: Sequence[str], tasks: Sequence[TaskConfig], manager: str) -> list[str]:
    """The agent providers a manager delegates to: those a workflow lists, then those its
    tasks name, in that order, without repeats and without the manager."""
    named = [*listed, *(task.agent_provider_id for task in tasks)]
    return [pid for pid in dict.fromkeys(named) if pid != manager]


def coworker_mcps(wf: WorkflowConfig) -> dict[str, list[str]]:
    """Each coworker's MCP providers, by id: those of the tasks delegated to it (a task
    without ``mcp_providers`` brings all of the workflow's), or all of the workflow's for a
    coworker no task names. The manager has none: CrewAI gives it only delegation tools.
    """
    crew = wf.crew
    if crew is None:
        return {}
    every = [m.id for m in wf.mcp_providers]
    out: dict[str, list[str]] = {}
    for coworker in crew.coworkers:
        own = [t for t in crew.tasks if t.agent_provider_id == coworker]
        if not own:
            out[coworker] = every
            continue
        ids = [mid for t in own for mid in (every if t.mcp_providers is None else t.mcp_providers)]
        out[coworker] = list(dict.fromkeys(ids))
    return out


def crew_step(wf: WorkflowConfig) -> TaskConfig:
    """The one step of a hierarchical workflow ``wf`` (whose ``crew`` is set).

    It runs on the manager's provider (its fallbacks are the step's), with every MCP
    provider of the coworkers. Its ``timeout_s`` is the sum of the tasks' when each sets
    one, its ``retries`` the most any task sets, its ``pool`` the first a task names.
    """
    crew = wf.crew
    if crew is None:
        raise ValueError(f"workflow {wf.name!r} is not hierarchical")
    tasks = crew.tasks
    timeouts = [t.timeout_s for t in tasks]
    retries = [t.retries for t in tasks if t.retries is not None]
    mcps = [mid for ids in coworker_mcps(wf).values() for mid in ids]
    order = ", ".join(crew.task_sequence)
    return TaskConfig(
        id=CREW_STEP,
        agent_provider_id=crew.manager_provider,
        description=(
            f"The hierarchical crew of workflow {wf.name!r}: manager {crew.manager_provider!r} "
            f"runs the tasks {order} and delegates them to {', '.join(crew.coworkers) or '-'}."
        ),
        expected_output=f"The output of the crew's last task, {crew.task_sequence[-1]!r}."
        if crew.task_sequence
        else "The output of the crew's last task.",
        mcp_providers=list(dict.fromkeys(mcps)),
        timeout_s=sum(t for t in timeouts if t is not None) if None not in timeouts else None,
        retries=max(retries) if retries else None,
        pool=next((t.pool for t in tasks if t.pool is not None), None),
    )


def hierarchical_workflow(wf: WorkflowConfig, crew: HierarchicalCrew) -> WorkflowConfig:
    """``wf`` (its providers and settings) as the one-step workflow of ``crew``."""
    with_crew = wf.model_copy(update={"process": "hierarchical", "crew": crew})
    step = crew_step(with_crew)
    return with_crew.model_copy(update={"tasks": [step], "task_sequence": [CREW_STEP]})
