"""Run a whole workflow as ONE CrewAI crew in this process (the ``inprocess`` backend).

One agent per task (each with a fresh LLM, so a scripted provider replays the same replies
it would replay in a per-step worker) and one CrewAI task per workflow task, in
``task_sequence`` order, ``Process.sequential``, one ``kickoff(inputs=...)``: CrewAI's own
semantics, including its context passing. Without ``depends_on`` a task sees the outputs of
all earlier tasks (CrewAI's default); with ``depends_on`` its ``Task.context`` is exactly
its dependencies, and a task without ``depends_on`` is a root with no context.

Every task reports its StepResult (output, usage, timing, artifacts) through ``on_step`` as
it completes, from CrewAI's supported per-task ``callback``, so a crashed process still
leaves the finished steps in the run store.

A crew may be the rest of a run (its retried step onwards): each task then runs as the
attempt ``attempts`` gives it, on the agent provider its task names (the backend puts a
fallback's id there).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from agentic.catalog.dag import task_mcp_providers, task_tools
from agentic.contracts import (
    AgentProvider,
    Price,
    StepResult,
    TaskConfig,
    Timing,
    WorkflowConfig,
    utcnow,
)
from agentic.errors import ConfigError, FatalStepFailure, RetryableStepFailure, StepFailure
from agentic.graph import context
from agentic.logs import log_context
from agentic.runtime import spans
from agentic.runtime.agents import build_agent, build_crew, build_task, kickoff
from agentic.runtime.artifacts import ArtifactSink, save_artifacts
from agentic.runtime.llm import build_llm, naming_the_endpoint
from agentic.runtime.mcp import server_configs
from agentic.runtime.prices import price_of
from agentic.runtime.pytools import CatalogCode
from agentic.runtime.results import as_utc, step_error_from, usage_from, worker_info
from agentic.runtime.structured import final_answer

OnStep = Callable[[StepResult], bool | None]
"""Takes each task's StepResult; returning False stops the crew before its next task."""


class CrewStopped(BaseException):
    """Raised out of a kickoff whose ``on_step`` asked to stop (the run ended early: its
    cost limit). A BaseException, so that no ``except Exception`` on the way swallows it."""


def execution_order(wf: WorkflowConfig) -> list[TaskConfig]:
    """Tasks in ``task_sequence`` order, moved just enough that dependencies come first.

    CrewAI runs a sequential crew in list order and a task's context must already be done.
    """
    remaining = [wf.task(task_id) for task_id in wf.task_sequence]
    done: set[str] = set()
    order: list[TaskConfig] = []
    while remaining:
        ready = next((t for t in remaining if set(t.depends_on or []) <= done), None)
        if ready is None:
            cycle = ", ".join(t.id for t in remaining)
            raise ConfigError(f"workflow {wf.name!r}: dependency cycle among {cycle}")
        remaining.remove(ready)
        order.append(ready)
        done.add(ready.id)
    return order


def _task_mcp_entries(wf: WorkflowConfig, task: TaskConfig) -> list[dict[str, Any]]:
    return [p.model_dump(mode="json") for p in task_mcp_providers(wf, task)]


class _Reporter:
    """Turns each finished CrewAI task into a StepResult and hands it to ``on_step``."""

    def __init__(
        self,
        run_id: str,
        on_step: OnStep,
        store: ArtifactSink | None,
        env: Mapping[str, str],
        attempts: Mapping[str, int],
    ) -> None:
        self.run_id, self.on_step, self.store, self.env = run_id, on_step, store, env
        self.attempts = attempts
        self.finished: set[str] = set()
        self.closed = False  # the kickoff was interrupted: nothing more is reported
        self.worker = worker_info(env)  # every task runs in this process

    def callback(
        self, cfg: TaskConfig, crew_task: Any, agent: Any, price: Price | None
    ) -> Callable[[Any], None]:
        step_id = cfg.id

        def _report(output: Any) -> None:
            if self.closed:
                return
            # An answer that does not match its output_schema fails the task here.
            text, value = final_answer(output.raw, cfg.output_schema, step_id)
            artifacts = []
            if self.store is not None:
                artifacts = save_artifacts(self.store, self.run_id, step_id, text)
            result = StepResult(
                run_id=self.run_id,
                step_id=step_id,
                attempt=self.attempts.get(step_id, 1),
                status="succeeded",
                output=text,
                output_json=value,
                artifacts=artifacts,
                # A fresh LLM per task: its lifetime usage is this task's usage.
                usage=usage_from(agent.llm.get_token_usage_summary(), price),
                timing=Timing(
                    started_at=as_utc(crew_task.start_time),
                    finished_at=as_utc(crew_task.end_time) or utcnow(),
                ),
                worker=self.worker,
                reused_from=None,
                provider=cfg.agent_provider_id,
            )
            spans.task_ended(str(crew_task.id), result)
            go_on = self.on_step(result)
            self.finished.add(step_id)
            if go_on is False:
                self.closed = True
                raise CrewStopped(step_id)

        return _report

    def failed(
        self, cfg: TaskConfig, exc: BaseException, crew_task: Any, provider: AgentProvider
    ) -> StepFailure:
        step_id = cfg.id
        error = naming_the_endpoint(step_error_from(exc), provider, self.env)
        started = as_utc(crew_task.start_time) or utcnow()
        timing = Timing(started_at=started, finished_at=as_utc(crew_task.end_time) or utcnow())
        result = StepResult.failed(
            self.run_id,
            step_id,
            self.attempts.get(step_id, 1),
            error,
            timing=timing,
            worker=self.worker,
            provider=cfg.agent_provider_id,
        )
        spans.task_ended(str(crew_task.id), result)
        self.on_step(result)
        kind = RetryableStepFailure if error.retryable else FatalStepFailure
        return kind(
            error.message, run_id=self.run_id, step_id=step_id, cause=exc, error_type=error.type
        )


def _build(
    wf: WorkflowConfig,
    order: list[TaskConfig],
    values: Mapping[str, str],
    reporter: _Reporter,
    env: Mapping[str, str],
) -> tuple[list[Any], dict[str, Any], bool]:
    agents: list[Any] = []
    tasks: dict[str, Any] = {}
    verbose = False
    seen = context(wf)
    code = CatalogCode(env)  # this process's own tools and guardrails, by id
    for cfg in order:
        provider = wf.provider(cfg.agent_provider_id)
        verbose = verbose or provider.verbose
        llm = build_llm(
            provider,
            step_id=cfg.id,
            topic=values["topic"],
            inputs=values,
            attempt=reporter.attempts.get(cfg.id, 1),
            env=env,
        )
        agent = build_agent(
            provider,
            llm=llm,
            mcps=server_configs(_task_mcp_entries(wf, cfg), env),
            tools=code.tools(task_tools(wf, cfg)),
        )
        options: dict[str, Any] = {}
        if wf.uses_depends_on:  # its dependencies, a repeat once (agentic.graph)
            options["context"] = [tasks[d] for d in seen[cfg.id]]
        task = build_task(
            name=cfg.id,
            description=cfg.description,
            expected_output=cfg.expected_output,
            agent=agent,
            guardrail=code.guardrail(cfg.guardrail),
            guardrail_max_retries=cfg.guardrail_max_retries,
            output_schema=cfg.output_schema,
            **options,
        )
        task.callback = reporter.callback(cfg, task, agent, price_of(provider))
        agents.append(agent)
        tasks[cfg.id] = task
    return agents, tasks, verbose


def run_workflow_inprocess(
    wf: WorkflowConfig,
    *,
    run_id: str,
    inputs: Mapping[str, str],
    on_step: OnStep,
    store: ArtifactSink | None = None,
    env: Mapping[str, str] | None = None,
    attempts: Mapping[str, int] | None = None,
) -> str:
    """Run ``wf`` as one CrewAI crew; report each task through ``on_step``; return the output.

    Args:
        wf: The resolved workflow.
        run_id: The run (for StepResults and artifact paths).
        inputs: The run's inputs; ``topic`` defaults to the workflow's topic. CrewAI
            interpolates them into descriptions and expected outputs at kickoff.
        on_step: Called with each task's StepResult as the task completes, and with a
            failed StepResult for the task that failed. Returning False after a success
            stops the crew: :class:`CrewStopped` is raised.
        store: Where artifacts declared in outputs are saved (a ``RunStore``).
        env: Environment for placeholders and API keys; default ``os.environ``.
        attempts: The attempt each task runs as, by step id (default 1).

    Returns:
        The output of the last task.

    Raises:
        agentic.errors.StepFailure: a task failed (``step_id``, ``retryable`` and the cause
            are set; ``on_step`` has already received its failed result). Configuration
            errors found while building the crew are raised as they are, before any task.
    """
    env = os.environ if env is None else env
    values = {"topic": wf.topic, **inputs}
    order = execution_order(wf)
    reporter = _Reporter(run_id, on_step, store, env, attempts or {})
    agents, tasks, verbose = _build(wf, order, values, reporter, env)
    crew = build_crew(agents, list(tasks.values()), verbose=verbose)
    # Each record logged meanwhile carries the step that runs: the first one not reported;
    # each task started gets a span (docs/observability.md, "Traces").
    with (
        log_context(run_id=run_id, current_step=lambda: _running(order, reporter)),
        spans.crew(run_id, wf, reporter.attempts),
    ):
        try:
            result = kickoff(crew, values)
        except Exception as exc:
            # Sequential: the failed task is the first one that did not report.
            failed = next((t for t in order if t.id not in reporter.finished), order[-1])
            provider = wf.provider(failed.agent_provider_id)
            raise reporter.failed(failed, exc, tasks[failed.id], provider) from exc
        finally:  # an interrupted kickoff's abandoned model call must not report later
            reporter.closed = True
    return str(result.raw)


def _running(order: list[TaskConfig], reporter: _Reporter) -> tuple[str, int] | None:
    """The step the sequential crew runs now (for log records): the first not reported."""
    step_id = next((t.id for t in order if t.id not in reporter.finished), None)
    return None if step_id is None else (step_id, reporter.attempts.get(step_id, 1))
