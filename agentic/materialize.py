"""WorkflowConfig + inputs -> one self-contained StepSpec per step.

Deterministic: the same workflow, inputs, run id and store URL give byte-identical specs,
whichever backend runs them (nothing here reads a clock, a random source or the backend).
``${VAR}`` placeholders are copied as they are: a worker expands them from its own
environment, so a secret value never reaches a spec, the store or a message.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

from agentic.catalog.dag import check_workflow, step_dependencies, task_mcp_providers
from agentic.catalog.resolve import require_workflow_env
from agentic.contracts import ResolvedMCP, StepSpec, TaskConfig, TaskText, WorkflowConfig
from agentic.ids import check_id
from agentic.settings import Settings

PRIOR_OUTPUTS_MARKER = "\n\n---\nOutputs of earlier steps, for you to build on:\n"
"""Starts the injected block, so re-injecting replaces it instead of stacking a second one."""

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
    check_id(run_id, "run id")
    check_workflow(wf)
    require_workflow_env(wf, env)
    topic = inputs.get("topic") or wf.topic
    variables = {**inputs, "topic": topic}
    dependencies = step_dependencies(wf)
    return [
        StepSpec(
            run_id=run_id,
            step_id=step_id,
            step_index=index,
            attempt=1,
            workflow_name=wf.name,
            topic=topic,
            inputs=dict(sorted(inputs.items())),
            task=_task_text(wf.task(step_id), variables),
            agent_provider=_provider_dict(wf, wf.task(step_id)),
            mcp_providers=[
                ResolvedMCP(id=m.id, resolved=m.model_dump(mode="json", exclude_none=True))
                for m in task_mcp_providers(wf, wf.task(step_id))
            ],
            depends_on=dependencies[step_id],
            timeout_s=wf.task(step_id).timeout_s or settings.default_step_timeout_s,
            pool=_pool(wf, wf.task(step_id), settings),
            store_url=store_url,
        )
        for index, step_id in enumerate(wf.task_sequence)
    ]


def with_prior_outputs(spec: StepSpec, outputs: Mapping[str, str], *, max_chars: int) -> StepSpec:
    """Merge dependencies' outputs into the task description, each capped at ``max_chars``.

    Each output goes under its own heading (``## Output of step `research```), in the
    order of ``outputs``; a cut output says so. ``spec.prior_outputs`` gets the capped texts.
    Applying it again replaces the earlier injection.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    description = spec.task.description
    if spec.prior_outputs and PRIOR_OUTPUTS_MARKER in description:
        description = description[: description.rindex(PRIOR_OUTPUTS_MARKER)]
    capped = {step_id: _cap(text, max_chars) for step_id, text in outputs.items()}
    if capped:
        sections = [f"\n## Output of step `{sid}`\n\n{text}\n" for sid, text in capped.items()]
        description += PRIOR_OUTPUTS_MARKER + "".join(sections)
    task = TaskText(description=description, expected_output=spec.task.expected_output)
    return spec.model_copy(update={"task": task, "prior_outputs": capped})


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
    return _PLACEHOLDER.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


def _cap(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    return (
        text[:max_chars] + f"\n\n[… truncated: first {max_chars} of {len(text)} characters shown; "
        "the full output is in the run store]"
    )


def _task_text(task: TaskConfig, variables: Mapping[str, str]) -> TaskText:
    return TaskText(
        description=interpolate(task.description, variables),
        expected_output=interpolate(task.expected_output, variables),
    )


def _provider_dict(wf: WorkflowConfig, task: TaskConfig) -> dict[str, object]:
    return wf.provider(task.agent_provider_id).model_dump(mode="json", exclude_none=True)


def _pool(wf: WorkflowConfig, task: TaskConfig, settings: Settings) -> str:
    provider = wf.provider(task.agent_provider_id)
    return task.pool or provider.pool or settings.default_pool
