"""The planner prompt: the goal, what the catalog offers, the session so far.

What is offered is decided here, once, for the prompt and for checking the reply alike:

* agent providers whose ``required_env`` is set (the planner's own provider excluded), and
  whose ``min_vram_gb`` this machine has when the steps run here;
* MCP providers whose ``required_env`` / ``required_env_any`` is set, except ``stdio``
  providers when the steps will run on ``kubernetes`` (a Job's container has no business
  starting commands that a catalog meant for a developer's machine).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentic.catalog import Catalog
from agentic.planning.hardware import fitting
from agentic.planning.knowledge import PlannerKnowledge, knowledge_sections
from agentic.planning.plan import Offer, PlanStep, schema_json
from agentic.planning.sessions import SessionEntry
from agentic.settings import Settings

NO_STDIO_BACKENDS = frozenset({"kubernetes"})
"""Backends whose steps are never offered ``stdio`` MCP providers."""

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
) -> Offer:
    """What a planner may use for a run on ``backend`` (see the module docstring).

    With ``settings``, agents whose ``min_vram_gb`` this machine lacks are not offered when
    the steps run here (:func:`agentic.planning.hardware.fitting`).
    """
    agents = {
        k: p for k, p in catalog.available_agent_providers(env).items() if k not in exclude_agents
    }
    if settings is not None:
        agents = fitting(agents, settings, backend=backend)
    mcps = {
        k: p
        for k, p in catalog.available_mcp_providers(env).items()
        if not (p.transport == "stdio" and backend in NO_STDIO_BACKENDS)
    }
    return Offer(agents=agents, mcps=mcps, inputs=tuple(inputs), max_steps=max_steps)


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
        backend: Where the steps will run (``kubernetes`` is not offered stdio providers).
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
        line = f"- {agent_id}: {agent.role}. Goal: {agent.goal.strip()}"
        if agent.planner_hint:
            line += f" Hint: {agent.planner_hint.strip()}"
        if agent.good_for:
            line += f" Good for: {_text(agent.good_for)}"
        lines.append(line)
    if not offer.agents:
        lines.append("- (none available)")
    return "\n".join(lines)


def _tools_section(offer: Offer) -> str:
    if not offer.mcps:
        return "Tool providers (MCP): none available; leave mcp_providers out."
    lines = ["Tool providers (MCP) a step may list in mcp_providers (a step gets no tools else):"]
    for mcp_id, mcp in sorted(offer.mcps.items()):
        line = f"- {mcp_id}: {mcp.description.strip() or 'no description'}"
        if mcp.planner_hint:
            line += f" Hint: {mcp.planner_hint.strip()}"
        if mcp.capabilities:
            line += f" Capabilities: {_text(mcp.capabilities)}"
        if mcp.good_for:
            line += f" Good for: {_text(mcp.good_for)}"
        if mcp.user_goal_keywords:
            line += f" Goal keywords: {', '.join(mcp.user_goal_keywords)}."
        lines.append(line)
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
