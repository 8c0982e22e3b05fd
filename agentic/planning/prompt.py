"""The planner prompt: the goal, what the catalog offers, the session so far.

What is offered is decided here, once, for the prompt and for checking the reply alike:

* agent providers whose ``required_env`` is set (the planner's own provider excluded), and
  whose ``min_vram_gb`` this machine has when the steps run here;
* MCP providers whose ``required_env`` / ``required_env_any`` is set and whose server can
  run where the steps will (:func:`agentic.catalog.placement.runs_on`: on ``kubernetes``, a
  ``stdio`` provider only with a ``kubernetes:`` sidecar image; a Job's container has no
  business starting commands that a catalog meant for a developer's machine).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentic.catalog import Catalog, is_available, resolution_issues
from agentic.catalog.placement import runs_on
from agentic.contracts import AGENT_TYPES, PLACEHOLDER
from agentic.planning.hardware import fitting
from agentic.planning.knowledge import PlannerKnowledge, knowledge_sections
from agentic.planning.plan import Offer, OfferedWorkflow, PlanStep, schema_json
from agentic.planning.sessions import SessionEntry
from agentic.settings import Settings

DEFAULT_MAX_CHARS = 2000
"""Characters of an earlier output or answer shown to the planner."""


@dataclass(frozen=True)
class DoneStep:
    """A step an iterative run already executed, and what it produced."""

    step: PlanStep
    output: str


def offer_for(
    catalog: Catalog,
    *,
    backend: str,
    env: Mapping[str, str] | None = None,
    exclude_agents: Collection[str] = (),
    inputs: Collection[str] = ("topic",),
    max_steps: int = 8,
    settings: Settings | None = None,
    workflows: bool = False,
) -> Offer:
    """What a planner may use for a run on ``backend`` (see the module docstring).

    With ``settings``, agents whose ``min_vram_gb`` this machine lacks are not offered when
    the steps run here (:func:`agentic.planning.hardware.fitting`). With ``workflows``, the
    catalog workflows a planner may choose as they are (:func:`catalog_workflows`).
    """
    agents = {
        k: p for k, p in catalog.available_agent_providers(env).items() if k not in exclude_agents
    }
    if settings is not None:
        agents = fitting(agents, settings, backend=backend)
    mcps = {k: p for k, p in catalog.available_mcp_providers(env).items() if runs_on(p, backend)}
    offered = (
        catalog_workflows(catalog, backend=backend, env=env, inputs=inputs, settings=settings)
        if workflows
        else {}
    )
    return Offer(
        agents=agents,
        mcps=mcps,
        tools=catalog.available_tools(env),
        inputs=tuple(inputs),
        max_steps=max_steps,
        workflows=offered,
    )


def catalog_workflows(
    catalog: Catalog,
    *,
    backend: str,
    env: Mapping[str, str] | None = None,
    inputs: Collection[str] = ("topic",),
    settings: Settings | None = None,
) -> dict[str, OfferedWorkflow]:
    """The catalog workflows a goal may run as they are: those whose file has a ``meta``
    (the original tool's router data) without ``router_include: false``, that resolve, whose
    every provider would be offered on its own (credentials, type, hardware, where its MCP
    servers run) and whose placeholders are all inputs of the run."""
    env = catalog.environ if env is None else env
    offered: dict[str, OfferedWorkflow] = {}
    for name, definition in sorted(catalog.workflows.items()):
        meta = definition.meta
        if meta is None or not meta.router_include:
            continue
        workflow, issues = resolution_issues(definition, catalog)
        if issues:
            continue
        agents = {
            p.id: p
            for p in workflow.agent_providers
            if p.type in AGENT_TYPES and is_available(p, env)
        }
        if settings is not None:
            agents = fitting(agents, settings, backend=backend)
        usable = len(agents) == len(workflow.agent_providers) and all(
            is_available(m, env) and runs_on(m, backend) for m in workflow.mcp_providers
        )
        texts = [text for t in workflow.tasks for text in (t.description, t.expected_output)]
        names = {n for text in texts for n in PLACEHOLDER.findall(text)}
        if usable and names <= set(inputs):
            offered[name] = OfferedWorkflow(meta, workflow)
    return offered


def build_planner_prompt(
    goal: str,
    catalog: Catalog,
    *,
    backend: str,
    env: Mapping[str, str] | None = None,
    session_history: Sequence[SessionEntry] = (),
    exclude_agents: Collection[str] = (),
    inputs: Collection[str] = ("topic",),
    max_steps: int = 8,
    progress: Sequence[DoneStep] | None = None,
) -> str:
    """The planner's prompt for ``goal``.

    Args:
        goal: What the user wants.
        catalog: Agents and MCP providers to choose from (gated by ``env`` and ``backend``).
        backend: Where the steps will run (``kubernetes`` is not offered stdio providers
            without a sidecar image).
        env: The environment ``required_env`` is checked against (default: the process's).
        session_history: Earlier goals of the session, oldest first.
        exclude_agents: Agents never offered (the planner's own provider).
        inputs: Input names steps may use as ``{placeholders}``.
        max_steps: Most steps one plan may have.
        progress: Iterative mode: the steps run so far (an empty list in the first round).
    """
    offer = offer_for(
        catalog,
        backend=backend,
        env=env,
        exclude_agents=exclude_agents,
        inputs=inputs,
        max_steps=max_steps,
    )
    return render_prompt(goal, offer, session_history=session_history, progress=progress)


def render_prompt(
    goal: str,
    offer: Offer,
    *,
    session_history: Sequence[SessionEntry] = (),
    progress: Sequence[DoneStep] | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    knowledge: PlannerKnowledge | None = None,
    review: Mapping[str, Any] | None = None,
) -> str:
    """The prompt text for ``offer`` (see :func:`build_planner_prompt`); ``knowledge``
    adds what the store knows (:mod:`agentic.planning.knowledge`), ``review`` the verdict
    on the last answer of an iterative run that did not pass."""
    parts = [
        "You plan multi-step agent workflows. Reply with ONE JSON object and nothing else; "
        f"it must match this JSON Schema:\n{schema_json()}",
        f"Goal:\n{goal}",
        _agents_section(offer),
        *(knowledge_sections(knowledge) if knowledge is not None else []),
        _tools_section(offer),
        *([_python_tools_section(offer)] if offer.tools else []),
        *([_workflows_section(offer)] if offer.workflows else []),
        _rules_section(offer, iterative=progress is not None),
    ]
    if session_history:
        parts.append(_session_section(session_history, max_chars))
    if progress is not None:
        parts.append(_progress_section(progress, max_chars))
    if review is not None:
        parts.append(_review_section(review))
    return "\n\n".join(parts) + "\n"


def _review_section(review: Mapping[str, Any]) -> str:
    score = review.get("score")
    shown = f"{score:g}/10" if isinstance(score, int | float) else "no score"
    minimum = review.get("min_score")
    needed = f" (it needs {minimum:g})" if isinstance(minimum, int | float) else ""
    reasons = "\n".join(f"- {reason}" for reason in review.get("reasons") or []) or "- none given"
    return (
        f"A reviewer scored the last final answer {shown}{needed}, for these reasons:\n"
        f"{reasons}\nPlan the steps that address them; the answer is written again after them."
    )


def _agents_section(offer: Offer) -> str:
    lines = ["Agents (use their id as agent_provider_id):"]
    for agent_id, agent in sorted(offer.agents.items()):
        about = f"{agent.role}. Goal: {agent.goal.strip()}"
        lines.append(_entry_line(agent_id, about, agent.planner_hint) + _good_for(agent.good_for))
    if not offer.agents:
        lines.append("- (none available)")
    return "\n".join(lines)


def _tools_section(offer: Offer) -> str:
    if not offer.mcps:
        return "Tool providers (MCP): none available; leave mcp_providers out."
    lines = ["Tool providers (MCP) a step may list in mcp_providers (a step gets no tools else):"]
    for mcp_id, mcp in sorted(offer.mcps.items()):
        line = _entry_line(mcp_id, mcp.description, mcp.planner_hint, mcp.capabilities)
        line += _good_for(mcp.good_for)
        if mcp.user_goal_keywords:
            line += f" Goal keywords: {', '.join(mcp.user_goal_keywords)}."
        lines.append(line)
    return "\n".join(lines)


def _python_tools_section(offer: Offer) -> str:
    lines = ["Python tools a step may list in tools (a step gets none else):"]
    for tool_id, tool in sorted(offer.tools.items()):
        line = _entry_line(tool_id, tool.description, tool.planner_hint)
        lines.append(line + _good_for(tool.good_for))
    return "\n".join(lines)


def _entry_line(
    entry_id: str,
    description: str,
    hint: str | None,
    capabilities: str | list[str] | None = None,
) -> str:
    """``- id: description Hint: … Capabilities: …``: a tool entry as the planner reads it."""
    line = f"- {entry_id}: {description.strip() or 'no description'}"
    if hint:
        line += f" Hint: {hint.strip()}"
    if capabilities:
        line += f" Capabilities: {_text(capabilities)}"
    return line


def _good_for(value: str | list[str] | None) -> str:
    return f" Good for: {_text(value)}" if value else ""


def _workflows_section(offer: Offer) -> str:
    lines = [
        "Catalog workflows: when one of them already does what the goal asks, reply "
        '{"workflow": "<name>"} without steps; it runs as written, with the goal as its topic:'
    ]
    for name, offered in sorted(offer.workflows.items()):
        meta = offered.meta
        about = " ".join(t.strip() for t in (meta.summary, meta.description) if t.strip())
        line = _entry_line(name, about or offered.workflow.description, None)
        steps = " -> ".join(offered.workflow.task_sequence)
        lines.append(f"{line}{_good_for(meta.good_for)} Steps: {steps}.")
    return "\n".join(lines)


def _text(value: str | list[str]) -> str:
    """A catalog's free text (one string, or a list of phrases) on one line."""
    text = value if isinstance(value, str) else "; ".join(value)
    return " ".join(text.split())


def _rules_section(offer: Offer, *, iterative: bool) -> str:
    names = ", ".join("{" + name + "}" for name in sorted(offer.inputs))
    rules = [
        "Rules:",
        f"- At most {offer.max_steps} steps; step ids use letters, digits, '_', '.', '-'.",
        "- Each step is done by one agent: give it a concrete description and expected_output.",
        "- If no step sets depends_on, the steps run in order and each sees all earlier "
        "outputs. With depends_on, a step runs once its dependencies are done and sees only "
        "their outputs; a step without depends_on then starts at once.",
        f"- Descriptions may use these placeholders: {names}. Write every other text out.",
    ]
    if iterative:
        rules.append(
            "- Iterative mode: plan only what comes next. Reply with the remaining steps (only "
            "the first new one runs before you are asked again), or with "
            '{"done": true, "final_answer": "..."} once the outputs so far meet the goal. '
            "Steps may depend on steps already done."
        )
    return "\n".join(rules)


def _session_section(history: Sequence[SessionEntry], max_chars: int) -> str:
    lines = ["Earlier goals in this session (oldest first); build on them:"]
    for number, entry in enumerate(history, start=1):
        lines.append(f"{number}. Goal: {entry.goal}")
        if entry.steps:
            lines.append(f"   Plan: {' -> '.join(entry.steps)}")
        if entry.final_answer is not None:
            lines.append(f"   Final answer: {_cap(entry.final_answer, max_chars)}")
        elif entry.status is not None:
            lines.append(f"   Outcome: {entry.status}, no answer")
    return "\n".join(lines)


def _progress_section(progress: Sequence[DoneStep], max_chars: int) -> str:
    if not progress:
        return "Steps done so far: none yet."
    lines = ["Steps done so far, with their outputs:"]
    for done in progress:
        step = done.step
        lines.append(f"## {step.id} ({step.agent_provider_id}): {step.description.strip()}")
        lines.append(_cap(done.output, max_chars))
    return "\n".join(lines)


def _cap(text: str, max_chars: int) -> str:
    text = text.strip()
    return text if len(text) <= max_chars else text[:max_chars] + " […]"
