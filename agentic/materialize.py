"""WorkflowConfig + inputs -> one self-contained StepSpec per step.

Deterministic: the same workflow, inputs, run id and store URL give byte-identical specs,
whichever backend runs them (nothing here reads a clock, a random source or the backend).
``${VAR}`` placeholders are copied as they are: a worker expands them from its own
environment, so a secret value never reaches a spec, the store or a message.

A step process reads task texts with :func:`own_description` and :func:`interpolate`; the
catalog is imported only where a run is materialized, so that process never loads it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from agentic.contracts import (
    PLACEHOLDER,
    CrewMember,
    CrewSpec,
    CrewTask,
    ResolvedMCP,
    StepSpec,
    TaskConfig,
    TaskText,
    WorkflowConfig,
    encode,
)
from agentic.errors import ConfigError
from agentic.graph import context, dependencies
from agentic.hierarchical import CREW_STEP, coworker_mcps, crew_view
from agentic.ids import check_id
from agentic.settings import Settings

PRIOR_OUTPUTS_MARKER = "\n\n---\nOutputs of earlier steps, for you to build on:\n"
"""Starts the injected block, so re-injecting replaces it instead of stacking a second one."""


def materialize(
    wf: WorkflowConfig,
    *,
    run_id: str,
    inputs: Mapping[str, str],
    store_url: str,
    settings: Settings,
    env: Mapping[str, str] | None = None,
) -> list[StepSpec]:
    """The StepSpecs of a run, in ``task_sequence`` order: attempt 1, no prior outputs.

    Args:
        wf: A resolved workflow.
        run_id: The run (a safe id).
        inputs: Run inputs; ``topic`` defaults to the workflow's topic. ``{name}`` in a
            task's description and expected output is replaced by ``inputs[name]``;
            unknown placeholders (and any other braces) are left as written.
        store_url: The run store the worker writes to.
        settings: Default pool and timeout.
        env: Environment for ``required_env`` gating (default: the process environment).

    Raises:
        CatalogError: the workflow's step graph is invalid.
        MissingEnvError: a provider a step uses needs variables that are not set.
        UnsafeIdError: ``run_id`` is not a safe id.
    """
    from agentic.catalog.dag import check_workflow
    from agentic.catalog.resolve import require_workflow_env

    check_id(run_id, "run id")
    check_workflow(wf)
    require_workflow_env(wf, env)
    specs = SpecFactory(wf, run_id=run_id, inputs=inputs, store_url=store_url, settings=settings)
    return [specs.spec(step_id) for step_id in wf.task_sequence]


class SpecFactory:
    """Builds the attempt-1 spec of any step of one run, as :func:`materialize` does.

    A driver keeps this instead of every spec: the workflow holds each provider once, while
    every spec carries its own copy (a 200-step run would hold 200 copies). What all steps
    share (dependencies, positions, provider entries) is worked out once.

    Args:
        wf: The run's resolved workflow (not checked here: :func:`materialize` checks).
        run_id: The run.
        inputs: The run's inputs.
        store_url: The run store the worker writes to.
        settings: Default pool and timeout.
    """

    def __init__(
        self,
        wf: WorkflowConfig,
        *,
        run_id: str,
        inputs: Mapping[str, str],
        store_url: str,
        settings: Settings,
    ) -> None:
        self.workflow = wf
        self._run_id = run_id
        self._inputs = dict(sorted(inputs.items()))
        self._topic = inputs.get("topic") or wf.topic
        self._variables = {**inputs, "topic": self._topic}
        self._store_url = store_url
        self._settings = settings
        self._index = {step_id: i for i, step_id in enumerate(wf.task_sequence)}
        self._tasks = {task.id: task for task in wf.tasks}
        self._dependencies = dependencies(wf)
        self._agents = {
            p.id: p.model_dump(mode="json", exclude_none=True) for p in wf.agent_providers
        }

    def spec(self, step_id: str) -> StepSpec:
        """The attempt-1 spec of ``step_id`` (``KeyError`` for a step the run does not have)."""
        from agentic.catalog.dag import task_mcp_providers, task_tools

        wf, task = self.workflow, self._tasks[step_id]
        return StepSpec(
            run_id=self._run_id,
            step_id=step_id,
            step_index=self._index[step_id],
            attempt=1,
            workflow_name=wf.name,
            topic=self._topic,
            inputs=self._inputs,
            task=_task_text(task, self._variables),
            agent_provider=self._agents[task.agent_provider_id],
            mcp_providers=[
                ResolvedMCP(id=m.id, resolved=m.model_dump(mode="json", exclude_none=True))
                for m in task_mcp_providers(wf, task)
            ],
            tools=task_tools(wf, task),
            guardrail=task.guardrail,
            guardrail_max_retries=task.guardrail_max_retries,
            depends_on=self._dependencies[step_id],
            timeout_s=task.timeout_s or self._settings.default_step_timeout_s,
            pool=_pool(wf, task, self._settings),
            store_url=self._store_url,
            crew=self._crew() if step_id == CREW_STEP else None,
        )

    def _crew(self) -> CrewSpec | None:
        """What the crew step of a hierarchical workflow runs (None in another workflow)."""
        view = crew_view(self.workflow)
        if view is None:
            return None
        crew = self.workflow.crew
        assert crew is not None
        mcps = coworker_mcps(self.workflow)
        members = [
            CrewMember(agent_provider=self._agents[pid], mcp_providers=mcps[pid])
            for pid in crew.coworkers
        ]
        seen = context(view) if view.uses_depends_on else {}
        tasks = []
        for task_id in view.task_sequence:  # checked: a task's context comes before it
            task = view.task(task_id)
            text = _task_text(task, self._variables)
            assigned = task.agent_provider_id
            tasks.append(
                CrewTask(
                    id=task_id,
                    description=text.description,
                    expected_output=text.expected_output,
                    agent_provider_id=None if assigned == crew.manager_provider else assigned,
                    context=seen[task_id] if view.uses_depends_on else None,
                )
            )
        return CrewSpec(coworkers=members, tasks=tasks)


def check_run_size(specs: SpecFactory, settings: Settings) -> None:
    """Refuse a run too big to drive: too many tasks, or specs adding up to too many bytes.

    Specs are built and measured one at a time, so checking costs the memory of one.

    Raises:
        ConfigError: over ``max_workflow_tasks`` or ``max_run_spec_bytes`` (the message
            names the setting).
    """
    wf = specs.workflow
    if len(wf.tasks) > settings.max_workflow_tasks:
        raise ConfigError(
            f"workflow {wf.name!r} has {len(wf.tasks)} tasks, over the limit of "
            f"{settings.max_workflow_tasks} (AGENTIC_MAX_WORKFLOW_TASKS)"
        )
    total = 0
    for step_id in wf.task_sequence:
        total += len(encode(specs.spec(step_id)))
        if total > settings.max_run_spec_bytes:
            raise ConfigError(
                f"the steps of workflow {wf.name!r} add up to more than "
                f"{settings.max_run_spec_bytes} bytes (AGENTIC_MAX_RUN_SPEC_BYTES)"
            )


def with_prior_outputs(spec: StepSpec, outputs: Mapping[str, str], *, max_chars: int) -> StepSpec:
    """Merge dependencies' outputs into the task description, each capped at ``max_chars``.

    Each output goes under its own heading (``## Output of step `research```), in the
    order of ``outputs``; a cut output says so. ``spec.prior_outputs`` gets the capped texts.
    Applying it again replaces the earlier injection.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    capped = {step_id: cap_output(text, max_chars) for step_id, text in outputs.items()}
    description = own_description(spec) + _injected(capped)
    task = spec.task.model_copy(update={"description": description})
    return spec.model_copy(update={"task": task, "prior_outputs": capped})


def with_prior_steps(
    spec: StepSpec, step_ids: Sequence[str], *, max_chars: int, all_earlier: bool = False
) -> StepSpec:
    """The spec of a step that sees the committed outputs of ``step_ids``, by reference:
    its runtime reads them from the run store (:func:`agentic.runtime.step.execute_step`)
    and cuts each at ``max_chars`` characters as :func:`with_prior_outputs` would. The
    spec's size does not depend on those outputs.

    ``all_earlier``: ``step_ids`` are every step before this one in the run's
    ``task_sequence`` (a workflow without ``depends_on``); the spec then says so instead of
    listing them, so its size does not depend on its position either.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    return spec.model_copy(
        update={
            "prior_steps": [] if all_earlier else list(step_ids),
            "prior_all_earlier": all_earlier and bool(step_ids),
            "prior_output_max_chars": max_chars,
        }
    )


def cap_output(text: str, max_chars: int) -> str:
    """``text`` cut at ``max_chars`` characters, saying so when it was."""
    if len(text) <= max_chars:
        return text
    return (
        text[:max_chars] + f"\n\n[… truncated: first {max_chars} of {len(text)} characters shown; "
        "the full output is in the run store]"
    )


def own_description(spec: StepSpec) -> str:
    """The step's own task description: the spec's, without the block of earlier steps'
    outputs :func:`with_prior_outputs` merged into it.

    The runtime hands those outputs to CrewAI as the task's context instead, where the
    ``inprocess`` crew's context passing puts them (docs/runtime.md, "Same prompts,
    tokens and durations on every backend").
    """
    description = spec.task.description
    block = _injected(spec.prior_outputs)
    if block and description.endswith(block):
        return description[: -len(block)]
    if spec.prior_outputs and PRIOR_OUTPUTS_MARKER in description:  # a block written otherwise
        return description[: description.rindex(PRIOR_OUTPUTS_MARKER)]
    return description


def _injected(outputs: Mapping[str, str]) -> str:
    """The block that shows ``outputs`` in a description (empty without outputs)."""
    if not outputs:
        return ""
    sections = [f"\n## Output of step `{sid}`\n\n{text}\n" for sid, text in outputs.items()]
    return PRIOR_OUTPUTS_MARKER + "".join(sections)


def with_provider(
    spec: StepSpec, wf: WorkflowConfig, provider_id: str, settings: Settings
) -> StepSpec:
    """The same spec run by another agent provider of ``wf`` (a fallback): its entry, and
    the pool it names unless the task names one."""
    if spec.agent_provider.get("id") == provider_id:
        return spec
    provider = wf.provider(provider_id)
    task = wf.task(spec.step_id)
    update = {
        "agent_provider": provider.model_dump(mode="json", exclude_none=True),
        "pool": task.pool or provider.pool or settings.default_pool,
    }
    return StepSpec.model_validate({**spec.model_dump(), **update})


def with_attempt(spec: StepSpec, attempt: int) -> StepSpec:
    """The same spec for another attempt (``attempt`` >= 1)."""
    return StepSpec.model_validate({**spec.model_dump(), "attempt": attempt})


def spec_fingerprint(spec: StepSpec) -> str:
    """sha256 (hex) of the spec's canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(
        spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """Replace ``{name}`` by ``variables[name]``; leave every other brace as written."""
    return PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def _task_text(task: TaskConfig, variables: Mapping[str, str]) -> TaskText:
    return TaskText(
        description=interpolate(task.description, variables),
        expected_output=interpolate(task.expected_output, variables),
        output_schema=task.output_schema,  # data, never interpolated
    )


def _pool(wf: WorkflowConfig, task: TaskConfig, settings: Settings) -> str:
    provider = wf.provider(task.agent_provider_id)
    return task.pool or provider.pool or settings.default_pool
