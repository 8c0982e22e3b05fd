"""The plan a planner model writes, and how a plan becomes a :class:`WorkflowConfig`.

:class:`Plan` is the JSON the planner must reply with (its JSON Schema is committed as
``agentic/schemas/Plan.json`` and shown to the model). Checking a reply has two layers:

* :func:`parse_plan` -- the text is JSON (a ```` ```json ```` fence or a ReAct
  ``Final Answer:`` around it is tolerated) and matches the schema;
* :func:`plan_problems` -- what the schema cannot say: every agent and MCP provider is one
  the planner was offered, dependencies name known steps and form no cycle, placeholders
  are inputs of the run, and the plan has at most ``max_steps`` steps.

Both return readable messages, because they go back to the model in the repair request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from agentic.contracts import (
    AgentProvider,
    MCPProvider,
    TaskConfig,
    ToolEntry,
    WorkflowConfig,
    WorkflowMeta,
)
from agentic.contracts.base import all_errors, unset
from agentic.ids import SafeId

_FENCE = re.compile(r"```(?:json)?\s*\n?(.*?)```", re.DOTALL | re.IGNORECASE)
_FINAL_ANSWER = "Final Answer:"
# The placeholders CrewAI interpolates at kickoff: an unknown one fails the whole crew.
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_\-]*)\}")


class PlanStep(BaseModel):
    """One step of a plan: one agent from the catalog doing one task."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: SafeId = Field(description="Unique step id: letters, digits, '_', '.', '-'.")
    agent_provider_id: str = Field(description="Id of one of the offered agents.")
    description: str = Field(min_length=1, description="What the agent must do.")
    expected_output: str = Field(min_length=1, description="What the step must produce.")
    mcp_providers: list[str] | None = Field(
        default=None,
        description="Ids of offered MCP providers (tools) this step may use; none if unset.",
    )
    depends_on: list[str] | None = Field(
        default=None,
        description="Steps whose outputs this step needs. If no step sets it, steps run in "
        "order and each sees all earlier outputs.",
    )
    tools: list[str] | None = Field(
        default=None,
        description="Ids of offered Python tools this step may use; none if unset.",
    )


class Plan(BaseModel):
    """What the planner replies: the steps to run, or (iterative mode) that the goal is met."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="Plan")

    steps: list[PlanStep] = Field(
        default_factory=list, description="The steps, in the order they should run."
    )
    done: bool = Field(
        default=False, description="Iterative mode: true when the results so far meet the goal."
    )
    final_answer: str | None = Field(
        default=None,
        description="Iterative mode, with done: the planner's own draft of the answer.",
    )
    workflow: str | None = Field(
        default=None,
        exclude_if=unset,  # a plan of steps is recorded as before plans could choose one
        description="The name of an offered catalog workflow that already does what the goal "
        "asks: it runs as written, with the goal as its topic. Give no steps with it.",
    )

    @model_validator(mode="after")
    def _steps_unless_done(self) -> Plan:
        if self.workflow is not None:
            if self.steps or self.done:
                raise ValueError("give either a catalog 'workflow' or 'steps', not both")
            return self
        if not self.steps and not self.done:
            raise ValueError(
                "a plan needs at least one step (or a catalog workflow, or done: true in "
                "iterative mode)"
            )
        return self


@dataclass(frozen=True)
class OfferedWorkflow:
    """A catalog workflow a planner may choose for a goal (its file has a ``meta``)."""

    meta: WorkflowMeta
    workflow: WorkflowConfig


@dataclass(frozen=True)
class Offer:
    """What the planner may use: the gated catalog entries and the run's input names."""

    agents: Mapping[str, AgentProvider]
    mcps: Mapping[str, MCPProvider]
    inputs: Collection[str] = ("topic",)
    max_steps: int = 8
    tools: Mapping[str, ToolEntry] = field(default_factory=dict)
    """Python tools (``tools/<id>.yaml``) a step may name, by id."""
    workflows: Mapping[str, OfferedWorkflow] = field(default_factory=dict)
    """Catalog workflows the planner may choose instead of planning steps, by name."""


class PlanSyntaxError(ValueError):
    """A reply that is not a plan; ``problems`` are the messages for the repair request."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def plan_json_text(raw: str) -> str:
    """The JSON inside a reply: after a ReAct ``Final Answer:``, inside a code fence."""
    text = raw.strip()
    if _FINAL_ANSWER in text:
        text = text[text.rindex(_FINAL_ANSWER) + len(_FINAL_ANSWER) :].strip()
    fenced = _FENCE.search(text)
    if fenced:
        return fenced.group(1).strip()
    return text


def parse_plan(raw: str) -> Plan:
    """Parse and schema-check a planner reply.

    Raises:
        PlanSyntaxError: not JSON, or not a valid :class:`Plan` (every problem listed).
    """
    text = plan_json_text(raw)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanSyntaxError([f"the reply is not valid JSON: {exc}"]) from exc
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        problems = [f"{loc or 'plan'}: {msg}" for loc, msg in all_errors(exc)]
        raise PlanSyntaxError(problems) from exc


def plan_problems(plan: Plan, offer: Offer, *, done_steps: Collection[str] = ()) -> list[str]:
    """Everything wrong with ``plan`` that the schema cannot express; empty when it is good.

    Args:
        plan: A schema-valid plan.
        offer: The agents, MCP providers, input names and step limit the planner was given.
        done_steps: Steps that already ran (iterative mode): dependencies may name them.
    """
    problems: list[str] = []
    if plan.workflow is not None and plan.workflow not in offer.workflows:
        offered = _listed(offer.workflows)
        problems.append(f"unknown catalog workflow {plan.workflow!r} (offered: {offered})")
    if len(plan.steps) > offer.max_steps:
        problems.append(f"the plan has {len(plan.steps)} steps; at most {offer.max_steps} allowed")
    ids = [s.id for s in plan.steps]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        problems.append(f"duplicate step ids: {', '.join(dupes)}")
    known = set(ids) | set(done_steps)
    for step in plan.steps:
        problems += _step_problems(step, offer, known)
    cycle = find_cycle(plan.steps)
    if cycle:
        problems.append(f"the dependencies form a cycle: {' -> '.join(cycle)}")
    return problems


def _step_problems(step: PlanStep, offer: Offer, known: set[str]) -> list[str]:
    where = f"step {step.id!r}"
    named = [
        ("agent", [step.agent_provider_id], offer.agents),
        ("tool provider", step.mcp_providers or [], offer.mcps),
        ("Python tool", step.tools or [], offer.tools),
    ]
    problems = [
        f"{where}: unknown {kind} {name!r} (offered: {_listed(offered)})"
        for kind, names, offered in named
        for name in names
        if name not in offered
    ]
    for dep in step.depends_on or []:
        if dep not in known:
            problems.append(f"{where}: depends on unknown step {dep!r}")
    for text in ("description", "expected_output"):
        for name in PLACEHOLDER.findall(getattr(step, text)):
            if name not in offer.inputs:
                problems.append(
                    f"{where}: {text} uses the placeholder {{{name}}}, which is not an input "
                    f"(inputs: {', '.join(sorted(offer.inputs))}); write the text instead"
                )
    return problems


def find_cycle(steps: Sequence[PlanStep]) -> list[str]:
    """One dependency cycle among ``steps`` as ``[a, b, a]``; empty when there is none."""
    deps = {s.id: list(s.depends_on or []) for s in steps}
    finished: set[str] = set()

    def visit(path: list[str]) -> list[str]:
        for dep in deps.get(path[-1], []):
            if dep in path:
                return [*path[path.index(dep) :], dep]
            if dep in deps and dep not in finished:
                found = visit([*path, dep])
                if found:
                    return found
        finished.add(path[-1])
        return []

    for step_id in deps:
        found = [] if step_id in finished else visit([step_id])
        if found:
            return found
    return []


def _listed(ids: Collection[str]) -> str:
    return ", ".join(sorted(ids)) or "none"


def run_order(steps: Sequence[PlanStep]) -> list[str]:
    """Step ids in plan order, moved just enough that dependencies come first."""
    remaining = list(steps)
    done: set[str] = set()
    order: list[str] = []
    while remaining:
        # Dependencies on steps outside ``steps`` (already run) count as met.
        inside = {s.id for s in remaining}
        ready = next(s for s in remaining if not (set(s.depends_on or []) & inside) - done)
        remaining.remove(ready)
        order.append(ready.id)
        done.add(ready.id)
    return order


def to_task(step: PlanStep) -> TaskConfig:
    """The workflow task of a plan step (no tools unless the step names them)."""
    return TaskConfig(
        id=step.id,
        agent_provider_id=step.agent_provider_id,
        description=step.description,
        expected_output=step.expected_output,
        mcp_providers=list(step.mcp_providers or []),
        depends_on=list(step.depends_on) if step.depends_on is not None else None,
        tools=list(step.tools) if step.tools else None,
    )


def plan_workflow(
    steps: Sequence[PlanStep], offer: Offer, *, name: str, topic: str, description: str = ""
) -> WorkflowConfig:
    """A self-contained workflow of checked ``steps``, every provider embedded.

    When any step sets ``depends_on`` the workflow is a DAG and a step without it is a root,
    as in a workflow file.
    """
    order = run_order(steps)
    by_id = {s.id: s for s in steps}
    agents = dict.fromkeys(by_id[i].agent_provider_id for i in order)
    mcps = dict.fromkeys(m for i in order for m in by_id[i].mcp_providers or [])
    return WorkflowConfig(
        name=name,
        topic=topic,
        description=description,
        agent_providers=[offer.agents[a] for a in agents],
        mcp_providers=[offer.mcps[m] for m in mcps],
        tasks=[to_task(by_id[i]) for i in order],
        task_sequence=order,
    )


def workflow_name(goal: str) -> str:
    """``plan-<first words of the goal>``: a readable, safe workflow name."""
    words = re.findall(r"[A-Za-z0-9]+", goal.lower())
    slug = "-".join(words)[:40].strip("-")
    return f"plan-{slug}" if slug else "plan"


def schema_json() -> str:
    """The plan's JSON Schema as compact text, for the planner prompt."""
    return json.dumps(Plan.model_json_schema(), separators=(",", ":"), sort_keys=True)
