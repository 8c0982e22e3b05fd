"""The crew of the steps an ``inprocess`` run has left: after a replay's reused steps, or
after a failed step that the machine retries.

The step-per-process backends skip finished steps through the state machine alone. The
``inprocess`` backend kicks off a CrewAI crew, which runs every task it is given, so it
kicks off the crew of the *remaining* tasks only: :func:`remaining_crew` removes the done
tasks and puts their outputs into the descriptions of the tasks that would have seen them
(the same "Outputs of earlier steps" block the other backends' specs carry), since CrewAI
cannot pass context from a task that is not in the crew. A step whose next attempt runs on
a fallback provider names that provider in the crew.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from agentic.contracts import StepSpec, TaskConfig, WorkflowConfig
from agentic.graph import context
from agentic.materialize import with_prior_outputs

# CrewAI's placeholder pattern: what it would try to interpolate at kickoff.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_\-]*)\}")


def remaining_crew(
    wf: WorkflowConfig,
    specs: Mapping[str, StepSpec],
    done: Mapping[str, str],
    *,
    max_chars: int,
    providers: Mapping[str, str] | None = None,
) -> tuple[WorkflowConfig, dict[str, str]]:
    """The workflow of the tasks left to run, and the extra kickoff inputs it needs.

    Args:
        wf: The run's workflow.
        specs: The run's materialized specs by step id (their texts are interpolated).
        done: Outputs of the steps that succeeded (reused ones included), by step id.
        max_chars: Cap of each injected output (``prior_output_max_chars``).
        providers: Steps that run on another agent provider of ``wf`` than their task
            names (a fallback), and that provider.

    Returns:
        The reduced workflow (the same when nothing is reused), and inputs that map every
        ``{placeholder}`` found in an injected output (other than the run's inputs) to
        itself: CrewAI interpolates task texts at kickoff and refuses unknown placeholders,
        and an output is text, not a template.
    """
    providers = providers or {}
    if not done and not providers:
        return wf, {}
    seen = context(wf)
    tasks: list[TaskConfig] = []
    literal: dict[str, str] = {}
    for task in wf.tasks:
        if task.id in done:
            continue
        shown = {s: done[s] for s in seen[task.id] if s in done}
        spec = with_prior_outputs(specs[task.id], shown, max_chars=max_chars)
        variables = {"topic", *spec.inputs}  # real inputs keep their values
        for text in shown.values():
            found = set(PLACEHOLDER.findall(text)) - variables
            literal.update({name: "{" + name + "}" for name in found})
        update: dict[str, object] = {
            "description": spec.task.description,
            "expected_output": spec.task.expected_output,
            "agent_provider_id": providers.get(task.id, task.agent_provider_id),
        }
        if wf.uses_depends_on:  # a task whose dependencies were all done becomes a root
            update["depends_on"] = [d for d in task.depends_on or [] if d not in done]
        tasks.append(task.model_copy(update=update))
    sequence = [s for s in wf.task_sequence if s not in done]
    return wf.model_copy(update={"tasks": tasks, "task_sequence": sequence}), literal
