"""CrewAI agents and crews built from catalog entries.

Both the per-step mini-crew (:mod:`agentic.runtime.step`) and the in-process workflow crew
(:mod:`agentic.runtime.crew`) build their agents here, so a step behaves the same way on
every backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from crewai import Agent, Crew, CrewOutput, Process, Task, TaskOutput
from crewai.agents.agent_builder.base_agent import BaseAgent
from crewai.tools import BaseTool
from crewai.utilities.string_utils import sanitize_tool_name
from pydantic import Field, ValidationError

from agentic.contracts import AgentProvider, first_error
from agentic.errors import CatalogError
from agentic.runtime import structured
from agentic.runtime.pytools import DEFAULT_GUARDRAIL_RETRIES, GuardrailCheck, counted_guardrail


def provider_from(entry: Mapping[str, Any] | AgentProvider) -> AgentProvider:
    """A spec's resolved provider dict -> :class:`AgentProvider`, or a clear config error."""
    if isinstance(entry, AgentProvider):
        return entry
    try:
        return AgentProvider.model_validate(dict(entry))
    except ValidationError as exc:
        name = entry.get("id", "<unnamed>")
        raise CatalogError(first_error(exc), file=f"agent provider {name!r}") from exc


class LoopHostedTool(BaseTool):
    """A CrewAI MCP tool whose calls start inside an event loop.

    CrewAI 1.15's ``MCPNativeTool`` called with no running loop (the ordinary synchronous
    ReAct path) makes its MCP call while handling the ``RuntimeError`` of its own loop
    check. On Python 3.11 the streamable-HTTP teardown always reports a cancel-scope error,
    and CrewAI's teardown triage then finds that ``RuntimeError`` in the error's context and
    fails the call ("no running event loop") although the tool answered. With a running
    loop, ``MCPNativeTool`` takes its other, clean path (a worker thread of its own). Same
    name, description and argument schema, so the agent sees the tool unchanged.
    """

    inner: BaseTool = Field(exclude=True)

    @classmethod
    def wrap(cls, tool: BaseTool, *, name: str | None = None) -> LoopHostedTool:
        """``tool`` with its calls hosted in an event loop, offered as ``name`` if given."""
        return cls(
            name=name or tool.name,
            description=tool.description,
            args_schema=tool.args_schema,
            inner=tool,
        )

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        if _loop_is_running():
            return self.inner.run(*args, **kwargs)
        return asyncio.run(_run_in_loop(self.inner, args, kwargs))


def _loop_is_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _run_in_loop(tool: BaseTool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return tool.run(*args, **kwargs)


def offered_tool_name(provider_id: str, tool: str) -> str:
    """The name an agent sees for MCP tool ``tool`` of MCP provider ``provider_id``.

    CrewAI prefixes an MCP tool with a server name made of the stdio command line or the
    URL, so the same tool would be offered as ``work_main_venv_bin_python_m_…_lookup_fact``
    on one machine and as a hashed 64-character name on another, and an HTTP tool's name
    would change with the port. agentic offers ``<provider id>_<tool>`` instead
    (``demo_tools_lookup_fact``): the same on every machine and backend, and made of names
    the catalog's author chose.
    """
    return sanitize_tool_name(f"{provider_id}_{tool}")


class StepAgent(Agent):
    """A CrewAI agent whose MCP tools are named after their provider (``offered_tool_name``)
    and wrapped in LoopHostedTool.

    ``mcp_ids[i]`` is the MCP provider id of ``mcps[i]``.
    """

    mcp_ids: list[str] = Field(default_factory=list)

    def get_mcp_tools(self, mcps: list[Any]) -> list[BaseTool]:
        """CrewAI's own MCP tool resolution, one server at a time, each tool renamed."""
        tools: list[BaseTool] = []
        for provider_id, server in zip(self.mcp_ids, mcps, strict=True):
            for tool in super().get_mcp_tools([server]):
                original = getattr(tool, "original_tool_name", None) or tool.name
                name = offered_tool_name(provider_id, original)
                tools.append(LoopHostedTool.wrap(tool, name=name))
        return tools

    def execute_task(
        self, task: Task, context: str | None = None, tools: list[BaseTool] | None = None
    ) -> Any:
        """CrewAI's ``execute_task``, with the agent's MCP tools when no tools are given.

        A crew hands a task its agent's MCP tools; work delegated to a coworker (a
        hierarchical crew's manager calling ``delegate_work_to_coworker``) runs with
        ``tools=None``, which CrewAI 1.15 reads as the agent's ``tools`` alone, leaving its
        MCP servers out. The servers are then listed only when work is delegated to it.
        """
        if tools is None and self.mcps:
            tools = [*(self.tools or []), *self.get_mcp_tools(list(self.mcps))]
        return super().execute_task(task, context, tools)


def build_agent(
    provider: AgentProvider,
    *,
    llm: Any,
    mcps: Mapping[str, Any] | None = None,
    tools: Sequence[BaseTool] = (),
) -> StepAgent:
    """One CrewAI agent for a provider, with its LLM, MCP servers and Python tools.

    Args:
        provider: The agent provider.
        llm: The CrewAI LLM.
        mcps: MCP provider id -> CrewAI MCP server configuration, in the task's order.
        tools: The task's Python tools (:class:`agentic.runtime.pytools.CatalogCode`).

    ``max_retry_limit=0``: CrewAI would otherwise re-run a failed task up to twice inside
    one attempt; agentic's coordinator owns retries (with backoff, retryable errors only).
    """
    mcps = mcps or {}
    return StepAgent(
        role=provider.role,
        goal=provider.goal,
        backstory=provider.backstory,
        llm=llm,
        mcps=list(mcps.values()) or None,
        mcp_ids=list(mcps),
        tools=list(tools),
        verbose=provider.verbose,
        allow_delegation=provider.allow_delegation,
        max_retry_limit=0,
    )


def build_task(
    *,
    name: str,
    description: str,
    expected_output: str,
    agent: Agent,
    guardrail: str | GuardrailCheck | None = None,
    guardrail_max_retries: int | None = None,
    output_schema: Mapping[str, Any] | None = None,
    **options: Any,
) -> Task:
    """One CrewAI task (``options``: ``context``, ``callback``).

    ``guardrail``: a sentence (CrewAI's LLM guardrail, judged by ``agent``'s LLM) or a
    registered callable (:meth:`agentic.runtime.pytools.CatalogCode.guardrail`); either is
    counted (:func:`~agentic.runtime.pytools.counted_guardrail`), so that a guardrail still
    refusing after ``guardrail_max_retries`` re-runs (unset: CrewAI's default) fails the
    attempt as ``GuardrailFailed``.

    ``output_schema``: the answer must be a JSON object matching this JSON Schema
    (:mod:`agentic.runtime.structured`): CrewAI's ``output_json``, a schema guardrail
    before the task's own, and a converter that never calls the model.
    """
    if guardrail is not None:
        retries = guardrail_max_retries
        if retries is None:
            retries = DEFAULT_GUARDRAIL_RETRIES
        options["guardrail"] = counted_guardrail(guardrail, agent.llm, retries)
        options["guardrail_max_retries"] = retries
    schema_guardrail = None
    if output_schema is not None:
        if guardrail_max_retries is not None:
            options.setdefault("guardrail_max_retries", guardrail_max_retries)
        options, schema_guardrail = structured.task_options(output_schema, name, options)
    task = Task(
        name=name,
        description=description,
        expected_output=expected_output,
        agent=agent,
        **options,
    )
    if schema_guardrail is not None:
        schema_guardrail.bind(task)
    return task


def finished_task(name: str, output: str) -> Task:
    """A task that ran elsewhere, holding its output: for the ``context`` of a task.

    A step run on its own (a worker's mini-crew) gets its dependencies' outputs in its
    spec. Given to CrewAI as its task's ``context``, they reach the model as the
    whole-workflow crew's context passing puts them (CrewAI's "This is the context you're
    working with" after the task, outputs joined by its divider): the same prompt on every
    backend. The task never runs; it is in no crew (CrewAI reads only its ``output``).
    """
    description = f"step {name}"
    done = TaskOutput(name=name, description=description, raw=output, agent="")
    return Task(name=name, description=description, expected_output="", output=done)


def build_crew(
    agents: list[BaseAgent], tasks: list[Task], *, verbose: bool, manager: BaseAgent | None = None
) -> Crew:
    """A crew that never collects traces: sequential, or hierarchical under ``manager``
    (CrewAI's ``manager_agent``: it runs every task, delegating to ``agents``)."""
    return Crew(
        agents=agents,
        tasks=tasks,
        process=Process.sequential if manager is None else Process.hierarchical,
        manager_agent=manager,
        verbose=verbose,
        tracing=False,
    )


def kickoff(crew: Crew, inputs: Mapping[str, str] | None = None) -> CrewOutput:
    """``crew.kickoff()``; agentic never streams, so the result is a whole ``CrewOutput``.

    CrewAI's own rate-limit retries (3 tries around every LLM call, each of which the SDK
    retries itself: one 429 cost 9 requests) are off for the kickoff: a provider's
    ``max_retries``, honoured by the SDK with ``Retry-After``, is the one retry layer
    inside a step (docs/providers.md).

    The kickoff runs in a copy of the caller's context: CrewAI keeps its event scopes in a
    context variable, and a kickoff that ends without its ending events (interrupted by a
    timeout, a cancel, a failure) would leave them to the next kickoff of this thread,
    until 100 of them made every later kickoff fail (``StackDepthExceededError``): in a
    long-lived process (a worker's thread host, the default backend retrying) that is a
    matter of time.
    """

    def run() -> object:
        with _without_crewai_rate_limit_retries():
            return crew.kickoff(inputs=dict(inputs) if inputs is not None else None)

    result = contextvars.copy_context().run(run)
    if not isinstance(result, CrewOutput):
        raise TypeError(f"expected a CrewOutput from kickoff, got {type(result).__name__}")
    return result


@contextlib.contextmanager
def _without_crewai_rate_limit_retries() -> Iterator[None]:
    """CrewAI skips its retry wrapper while its "a retry loop is active" flag (a context
    variable of ``crewai.llms.retry``) is set: set it around the kickoff. Without that
    variable (another CrewAI version) nothing changes, and
    ``tests/integration/test_provider_http.py`` counts the requests again."""
    try:
        from crewai.llms import retry
    except ImportError:  # pragma: no cover - another CrewAI layout
        yield
        return
    flag = getattr(retry, "_active_llm_rate_limit_retry", None)
    if flag is None:  # pragma: no cover
        yield
        return
    token = flag.set(True)
    try:
        yield
    finally:
        flag.reset(token)
