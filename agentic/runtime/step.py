"""Run one attempt of one step: a CrewAI mini-crew of one agent and one task.

This is what ``agentic execute-step``, subprocess and Kubernetes workers and NATS workers
run. The spec is self-contained: the task text already holds ``{topic}`` and the inputs, so
the crew is kicked off without inputs (CrewAI would try to interpolate braces a prior
output happens to contain); the agent's role, goal and backstory get the same values here,
as the ``inprocess`` crew's kickoff gives them.

The model sees the prompt the ``inprocess`` crew sends for the same task (docs/runtime.md,
"Same prompts, tokens and durations on every backend"): the outputs of earlier steps,
merged into the spec's description for its readers, are handed to CrewAI as the task's
``context`` instead, and the attempt's timing is CrewAI's start and end of the task, as
the crew reports it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from agentic import redact
from agentic.contracts import (
    AgentProvider,
    Artifact,
    StepError,
    StepResult,
    StepSpec,
    Timing,
    Usage,
    utcnow,
)
from agentic.errors import AgenticError, MissingEnvError, StoreError
from agentic.logs import in_step_context
from agentic.materialize import interpolate, own_description
from agentic.runtime import spans
from agentic.runtime.agents import (
    build_agent,
    build_crew,
    build_task,
    finished_task,
    kickoff,
    provider_from,
)
from agentic.runtime.artifacts import ArtifactSink, save_artifacts
from agentic.runtime.llm import build_llm, naming_the_endpoint
from agentic.runtime.mcp import server_configs
from agentic.runtime.prices import price_of
from agentic.runtime.pytools import CatalogCode
from agentic.runtime.results import as_utc, step_error_from, usage_from, worker_info
from agentic.runtime.structured import final_answer

if TYPE_CHECKING:
    from agentic.store import RunStore

log = logging.getLogger(__name__)


class MiniCrew:
    """The step's crew: one agent, one task; :meth:`run` kicks it off once.

    Building it raises what a bad entry raises (configuration errors).
    """

    def __init__(self, spec: StepSpec, env: Mapping[str, str]) -> None:
        self.provider = provider = provider_from(spec.agent_provider)
        llm = build_llm(
            provider,
            step_id=spec.step_id,
            topic=spec.topic,
            inputs=spec.inputs,
            attempt=spec.attempt,
            env=env,
        )
        variables = {**spec.inputs, "topic": spec.topic}
        code = CatalogCode(env)  # this process's own tools and guardrails, by id
        agent = build_agent(
            filled(provider, variables),
            llm=llm,
            mcps=server_configs(spec.mcp_providers, env),
            tools=code.tools(spec.tools),
        )
        self.task = build_task(
            name=spec.step_id,
            description=own_description(spec),
            expected_output=spec.task.expected_output,
            agent=agent,
            guardrail=code.guardrail(spec.guardrail),
            guardrail_max_retries=spec.guardrail_max_retries,
            output_schema=spec.task.output_schema,
            context=[finished_task(sid, text) for sid, text in spec.prior_outputs.items()],
        )
        self.crew = build_crew([agent], [self.task], verbose=provider.verbose)

    def run(self) -> tuple[str, Usage]:
        """Kick the crew off; its raw output and token usage.

        Raises whatever the step raised: the LLM's errors, CrewAI's.
        """
        result = kickoff(self.crew)
        return result.raw, usage_from(result.token_usage, price_of(self.provider))

    def timing(self, started: datetime) -> Timing:
        """CrewAI's start and end of the task; ``started`` (and now) where it has none."""
        return Timing(
            started_at=as_utc(self.task.start_time) or started,
            finished_at=as_utc(self.task.end_time) or utcnow(),
        )


def filled(provider: AgentProvider, variables: Mapping[str, str]) -> AgentProvider:
    """``provider`` with ``{name}`` in its role, goal and backstory filled from ``variables``
    (what CrewAI's kickoff does to the ``inprocess`` crew's agents)."""
    texts = {
        "role": interpolate(provider.role, variables),
        "goal": interpolate(provider.goal, variables),
        "backstory": interpolate(provider.backstory, variables),
    }
    return provider.model_copy(update=texts)


@in_step_context  # every record logged by the step carries its run, step and attempt
def execute_step(
    spec: StepSpec,
    *,
    store: ArtifactSink | None = None,
    env: Mapping[str, str] | None = None,
) -> StepResult:
    """Run one attempt of one step; never raises for a failure of the step.

    Args:
        spec: The step attempt to run.
        store: Where artifacts declared in the output are saved (a ``RunStore``); without
            one, nothing is saved and the result lists no artifacts. A file the store cannot
            write is left out with a warning; it never fails the step.
        env: Environment for ``${VAR}`` placeholders, API keys and ``required_env``;
            default ``os.environ``.

    Returns:
        A succeeded StepResult with output, usage, artifacts, timing and worker; or a
        failed one whose ``error`` says whether another attempt can help.
    """
    env = os.environ if env is None else env
    with spans.attempt(spec, env) as span:  # docs/observability.md, "Traces"
        result = _run_attempt(spec, store, env)
        spans.ended(span, result)
    spans.settle()  # exported before the caller reports the attempt
    return result


def _run_attempt(spec: StepSpec, store: ArtifactSink | None, env: Mapping[str, str]) -> StepResult:
    coworkers = [member.agent_provider for member in spec.crew.coworkers] if spec.crew else []
    redact.protect_entries(
        [spec.agent_provider, *coworkers, *(m.resolved for m in spec.mcp_providers)], env
    )
    started = utcnow()
    crew: MiniCrew | None = None
    try:
        spec = with_outputs_read(spec, store)
        crew = _crew_for(spec, env)
        output, usage = crew.run()
        output, output_json = final_answer(output, spec.task.output_schema, spec.step_id)
        timing = crew.timing(started)
        artifacts: list[Artifact] = []
        if store is not None:
            artifacts = save_artifacts(store, spec.run_id, spec.step_id, output)
    except Exception as exc:  # the step failed: report it, never raise
        error = _naming_the_endpoint(step_error_from(exc), spec, env)
        if isinstance(exc, MissingEnvError):  # the client never checks: say where to set it
            message = f"{error.message}; set it where the steps of pool {spec.pool!r} run"
            error = error.model_copy(update={"message": message})
        log.info("step %s/%s attempt %d failed: %s", spec.run_id, spec.step_id, spec.attempt, error)
        ended = Timing(started_at=started, finished_at=utcnow())
        timing = crew.timing(started) if crew is not None else ended
        return StepResult.failed(
            spec.run_id,
            spec.step_id,
            spec.attempt,
            error,
            timing=timing,
            worker=worker_info(env),
            provider=_provider_id(spec),
        )
    return StepResult(
        run_id=spec.run_id,
        step_id=spec.step_id,
        attempt=spec.attempt,
        status="succeeded",
        output=output,
        output_json=output_json,
        artifacts=artifacts,
        usage=usage,
        timing=timing,
        worker=worker_info(env),
        reused_from=None,
        provider=_provider_id(spec),
    )


def _crew_for(spec: StepSpec, env: Mapping[str, str]) -> MiniCrew:
    """The step's crew: a mini-crew, or a hierarchical crew's (``spec.crew``)."""
    if spec.crew is None:
        return MiniCrew(spec, env)
    from agentic.runtime.hierarchy import ManagedCrew  # built on this module's MiniCrew

    return ManagedCrew(spec, env)


def with_outputs_read(spec: StepSpec, store: object | None = None) -> StepSpec:
    """``spec`` with the committed outputs of its ``prior_steps`` read from the run store
    (``store`` when it is the spec's, else the store at ``spec.store_url``), each cut at
    ``prior_output_max_chars``: a spec hands them by reference, so it stays small.

    Raises:
        StoreError: the store failed, or holds no succeeded result of one of those steps
            (retryable: the next attempt reads again).
    """
    if not (spec.prior_steps or spec.prior_all_earlier) or spec.prior_outputs:
        return spec
    from agentic.materialize import cap_output
    from agentic.store import RunStore, open_store

    reader = store if isinstance(store, RunStore) and store.url == spec.store_url else None
    reader = reader or open_store(spec.store_url)
    limit = spec.prior_output_max_chars
    outputs: dict[str, str] = {}
    step_ids = spec.prior_steps or _earlier_steps(reader, spec)
    # On a remote store several reads overlap (RunStore.read_many).
    results = reader.read_many(lambda sid: reader.read_result(spec.run_id, sid), step_ids)
    for step_id, result in zip(step_ids, results, strict=True):
        if result is None or result.status != "succeeded":
            raise StoreError(
                f"the run store {reader.url} holds no succeeded result of step {step_id!r}, "
                f"whose output step {spec.step_id!r} sees",
                run_id=spec.run_id,
                step_id=step_id,
            )
        outputs[step_id] = cap_output(result.output, limit) if limit else result.output
    return spec.model_copy(update={"prior_outputs": outputs})


def _earlier_steps(store: RunStore, spec: StepSpec) -> list[str]:
    """The steps before ``spec``'s in its run's ``task_sequence`` (``prior_all_earlier``)."""
    workflow = store.read_run(spec.run_id).workflow
    sequence = workflow.task_sequence if workflow is not None else []
    if spec.step_id not in sequence:
        raise StoreError(
            f"run {spec.run_id!r} in {store.url} has no step {spec.step_id!r} in its workflow",
            run_id=spec.run_id,
            step_id=spec.step_id,
        )
    return sequence[: sequence.index(spec.step_id)]


def _provider_id(spec: StepSpec) -> str | None:
    provider = spec.agent_provider.get("id")
    return provider if isinstance(provider, str) else None


def _naming_the_endpoint(error: StepError, spec: StepSpec, env: Mapping[str, str]) -> StepError:
    """``error`` with the provider and the URL it called in front, unless it names them."""
    try:
        provider = provider_from(spec.agent_provider)
    except AgenticError:
        return error  # an invalid entry: the error says so already
    return naming_the_endpoint(error, provider, env)
