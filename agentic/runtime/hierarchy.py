"""The one step of a hierarchical crew: CrewAI's hierarchical process in one kickoff.

The spec's agent provider is the manager (CrewAI's ``manager_agent``): it runs every task
of ``spec.crew`` and delegates the work, at run time, to the coworkers through CrewAI's
delegation tools (``delegate_work_to_coworker``, ``ask_question_to_coworker``). A task
assigned to a coworker is delegated to that coworker only; an unassigned task to any of
them (CrewAI's rule). CrewAI sets the manager's ``allow_delegation`` itself and gives it no
other tool, so the manager has no MCP providers; each coworker has its own.

Every backend runs this same crew for the step (:mod:`agentic.hierarchical` says why it is
one step): a worker through :func:`agentic.runtime.step.execute_step`, the ``inprocess``
backend through the same function in its own process.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agentic.contracts import AgentProvider, ResolvedMCP, StepSpec, Timing, Usage, utcnow
from agentic.errors import CatalogError
from agentic.runtime.agents import build_agent, build_crew, build_task, kickoff, provider_from
from agentic.runtime.llm import build_llm
from agentic.runtime.mcp import server_configs
from agentic.runtime.prices import price_of
from agentic.runtime.results import as_utc, usage_from
from agentic.runtime.step import MiniCrew, filled


class ManagedCrew(MiniCrew):
    """A hierarchical crew built from a spec with ``crew`` set; :meth:`run` kicks it off.

    Building it raises what a bad entry raises (configuration errors), as a mini-crew does.
    """

    def __init__(self, spec: StepSpec, env: Mapping[str, str]) -> None:
        crew = spec.crew
        if crew is None:
            raise CatalogError("the step is not a hierarchical crew", file=f"step {spec.step_id}")
        self.provider = manager = provider_from(spec.agent_provider)
        self._spec, self._env = spec, env
        self._priced: list[tuple[Any, AgentProvider]] = []
        variables = {**spec.inputs, "topic": spec.topic}
        lead = build_agent(filled(manager, variables), llm=self._llm(manager))
        mcps = {m.id: m for m in spec.mcp_providers}
        coworkers: dict[str, Any] = {}
        for member in crew.coworkers:
            provider = provider_from(member.agent_provider)
            if provider.id == manager.id:  # a fallback that became the manager
                continue
            own = [_mcp(mcps, mid, spec) for mid in member.mcp_providers]
            coworkers[provider.id] = build_agent(
                filled(provider, variables),
                llm=self._llm(provider),
                mcps=server_configs(own, env),
            )
        tasks: dict[str, Any] = {}
        for task in crew.tasks:
            options: dict[str, Any] = {}
            if task.context is not None:  # else CrewAI's default: every earlier task's output
                options["context"] = [tasks[d] for d in task.context]
            tasks[task.id] = build_task(
                name=task.id,
                description=task.description,
                expected_output=task.expected_output,
                agent=coworkers.get(task.agent_provider_id or "", lead),
                **options,
            )
        self.tasks = list(tasks.values())
        self.task = self.tasks[-1]
        verbose = manager.verbose or any(a.verbose for a in coworkers.values())
        self.crew = build_crew(list(coworkers.values()), self.tasks, verbose=verbose, manager=lead)

    def _llm(self, provider: AgentProvider) -> Any:
        spec = self._spec
        llm = build_llm(
            provider,
            step_id=spec.step_id,
            topic=spec.topic,
            inputs=spec.inputs,
            attempt=spec.attempt,
            env=self._env,
        )
        self._priced.append((llm, provider))
        return llm

    def run(self) -> tuple[str, Usage]:
        """Kick the crew off; the last task's output and the usage of every agent's model,
        each priced at its own provider's price."""
        result = kickoff(self.crew)
        usage = Usage()
        for llm, provider in self._priced:
            usage = _added(usage, usage_from(llm.get_token_usage_summary(), price_of(provider)))
        return result.raw, usage

    def timing(self, started: datetime) -> Timing:
        """From CrewAI's start of the first task to its end of the last."""
        return Timing(
            started_at=as_utc(self.tasks[0].start_time) or started,
            finished_at=as_utc(self.task.end_time) or utcnow(),
        )


def _mcp(mcps: Mapping[str, ResolvedMCP], mcp_id: str, spec: StepSpec) -> ResolvedMCP:
    found = mcps.get(mcp_id)
    if found is None:
        raise CatalogError(
            f"a coworker names MCP provider {mcp_id!r}, which the step does not carry",
            file=f"step {spec.step_id}",
            field="crew.coworkers",
        )
    return found


def _added(total: Usage, more: Usage) -> Usage:
    costs = [c for c in (total.cost_usd, more.cost_usd) if c is not None]
    return Usage(
        prompt_tokens=total.prompt_tokens + more.prompt_tokens,
        completion_tokens=total.completion_tokens + more.completion_tokens,
        cost_usd=round(sum(costs), 8) if costs else None,
        requests=(total.requests or 0) + (more.requests or 0),
    )
