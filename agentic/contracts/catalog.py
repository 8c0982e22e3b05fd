"""Catalog entries (agent providers, MCP providers) and workflows.

Field names follow DESIGN §2: users of CrewAI-based orchestration tools already write them.
A :class:`WorkflowDefinition` is what a YAML file says (agent providers inline or by id);
a :class:`WorkflowConfig` is resolved and self-contained (every provider embedded), so a run
can be replayed without the catalog it came from.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from agentic.contracts.base import Frozen, unset
from agentic.contracts.output_schema import OutputSchema
from agentic.contracts.tools import GuardrailRef, ToolRef, refuse_code_fields
from agentic.ids import SafeId

EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""A ``{name}`` in a task's texts, filled from the run's inputs when it is materialized (as
CrewAI's ``kickoff(inputs=...)`` does)."""


class ScriptedToolCall(Frozen):
    """One ReAct tool call a scripted agent makes before its next reply."""

    tool: str = Field(description="Tool name as the agent sees it.")
    args: dict[str, Any] = Field(default_factory=dict, description="Tool arguments.")


class ScriptedFailure(Frozen):
    """Fail the first ``times`` attempts of every step this provider runs, then succeed."""

    times: int = Field(
        default=0, ge=0, description="Attempts that fail (attempt numbers 1..times)."
    )
    mode: Literal["error", "fatal", "unavailable", "crash", "hang"] = Field(
        default="error",
        description="error: retryable error; fatal: non-retryable error; unavailable: the "
        "provider failed as a rate-limited or down server does (retryable, moves down the "
        "fallback chain); crash: the process exits with status 3; hang: sleep until killed.",
    )
    message: str = Field(default="scripted failure", description="Error message.")


class ScriptedScript(Frozen):
    """What a ``type: scripted`` provider replies: an offline, deterministic LLM."""

    replies: list[str | ScriptedToolCall] = Field(
        default_factory=list,
        description="Replayed in order per step: a string is a final answer (may use {topic}, "
        "{step_id}, {task}, {tool_result} and input names); a mapping is a tool call.",
    )
    delay_s: float = Field(default=0.0, ge=0, description="Sleep before each reply.")
    repeat: int = Field(
        default=1,
        ge=1,
        le=1_000_000,
        description="Write each final answer this many times, one per line (big outputs "
        "for tests and demos).",
    )
    fail: ScriptedFailure | None = Field(
        default=None, description="Failure mode for retry and crash tests."
    )


class Price(Frozen):
    """What a model costs, in US dollars per million tokens."""

    input_per_million: float = Field(ge=0, description="USD per million prompt tokens.")
    output_per_million: float = Field(ge=0, description="USD per million completion tokens.")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The cost of one call's (or one step's) tokens, in US dollars."""
        spent = prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million
        return round(spent / 1_000_000, 8)


class Limits(Frozen):
    """A provider's budget, shared by every step that uses it across the installation:
    every worker and process of a NATS installation, or the process tree of a local run."""

    concurrency: int | None = Field(
        default=None, ge=1, description="Steps on this provider at once (a slot per step)."
    )
    requests_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="Model requests per calendar minute: a step starts only while the "
        "minute's requests are below it (each start reserves one).",
    )
    tokens_per_minute: int | None = Field(
        default=None,
        ge=1,
        description="Tokens per calendar minute: a step starts only while the minute's "
        "tokens are below it.",
    )


AGENT_TYPES = frozenset(
    {"openai", "anthropic", "ollama", "vllm", "huggingface", "litellm", "scripted"}
)
"""The ``type`` values an agent provider may have: the model clients agentic builds."""

Architecture = Literal["cpu", "gpu", "tpu"]


class Hardware(Frozen):
    """What an agent's model needs of the machine it runs on (the original tool's
    ``hardware`` mapping)."""

    architecture: list[Architecture] = Field(
        default_factory=list,
        description="The processors the model can run on, any of them (cpu, gpu, tpu); "
        "empty: any. The planner does not offer an agent none of whose architectures this "
        "machine has, where steps run on it (docs/compatibility.md).",
    )

    @model_validator(mode="before")
    @classmethod
    def _comma_separated(cls, data: Any) -> Any:
        """``architecture: gpu`` or ``"cpu, gpu"`` (as the original tool read it) is a list."""
        if isinstance(data, dict) and isinstance(data.get("architecture"), str):
            parts = re.split(r"[\s,;/|]+", data["architecture"].strip().lower())
            data = {**data, "architecture": [p for p in parts if p]}
        return data


class AgentProvider(Frozen):
    """An agent and the LLM behind it (``config/agent_providers/<id>.yaml``)."""

    id: SafeId
    type: str = Field(
        description="openai, anthropic, ollama, vllm, huggingface, litellm, scripted, …"
    )
    role: str
    goal: str
    backstory: str
    model: str | None = Field(default=None, description="Model name, e.g. gpt-4o-mini or llama3.2.")
    planner_hint: str | None = None
    good_for: str | list[str] | None = Field(
        default=None, description="What the agent is good at, shown to the planner."
    )
    min_vram_gb: float | None = None
    hardware: Hardware | None = Field(
        default=None, description="The processors the model runs on (the planner's filter)."
    )
    verbose: bool = False
    allow_delegation: bool = False
    temperature: float | None = None
    max_tokens: int | None = None
    openai_base_url: str | None = None
    anthropic_base_url: str | None = None
    ollama_host: str | None = None
    num_ctx: int | None = Field(
        default=None, gt=0, description="Context window of an `ollama` model, in tokens."
    )
    base_url: str | None = Field(
        default=None, description="Base URL for vllm, litellm proxies, huggingface endpoints."
    )
    api_key_env: EnvName | None = Field(
        default=None, description="Env var holding the API key (never the key)."
    )
    required_env: list[EnvName] = Field(default_factory=list)
    request_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="Seconds one model request may take before it fails (a timeout is "
        "retryable); unset: the SDK's own (600 s for OpenAI's).",
    )
    max_retries: int | None = Field(
        default=None,
        ge=0,
        le=10,
        description="Retries of one model request after a 429, a 5xx, a timeout or a "
        "refused connection, spaced as the server's Retry-After says (else with backoff). "
        "The only retry layer inside a step: CrewAI's own rate-limit retries are off. "
        "Unset: 2.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra HTTP headers of every model request; values may hold ${VAR} "
        "placeholders, expanded on the worker.",
    )
    price: Price | None = Field(
        default=None,
        description="USD per million input and output tokens, for `cost_usd`; unset: the "
        "shipped price of the model for openai and anthropic providers that call the "
        "vendor's API (agentic/runtime/prices.py), else no cost.",
    )
    limits: Limits | None = Field(
        default=None,
        description="A budget shared by every step on this provider (docs/providers.md): "
        "a step waits for it before it starts, and the wait does not count against its "
        "timeout_s.",
    )
    fallback: list[SafeId] = Field(
        default_factory=list,
        description="Agent providers to move to, in order, when this one fails a step with "
        "a provider error (429, 5xx, request timeout, refused connection) past its "
        "max_retries: each next attempt of the step runs on the next provider. The original "
        "tool's `exec_fallback_provider: id` is read as a one-element list.",
    )
    pool: str | None = Field(default=None, description="Worker pool hint (GPU pools, …).")
    resources: dict[str, Any] | None = Field(
        default=None, description="Kubernetes requests/limits hint."
    )
    node_selector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = None
    script: ScriptedScript | None = Field(
        default=None, description="Replies of a `scripted` provider."
    )

    @model_validator(mode="before")
    @classmethod
    def _exec_fallback_provider(cls, data: Any) -> Any:
        """The original tool's ``exec_fallback_provider: id``: a one-element ``fallback``."""
        if not isinstance(data, dict) or "exec_fallback_provider" not in data:
            return data
        data = dict(data)
        legacy = data.pop("exec_fallback_provider")
        if legacy is None:
            return data
        chain = data.get("fallback")
        if chain not in (None, [], [legacy]):
            raise ValueError("give either 'fallback' or 'exec_fallback_provider', not both")
        data["fallback"] = [legacy]
        return data

    @model_validator(mode="after")
    def _scripted_needs_script(self) -> AgentProvider:
        if self.type == "scripted" and self.script is None:
            raise ValueError("a provider of type 'scripted' needs a 'script'")
        if self.id in self.fallback:
            raise ValueError(f"fallback: provider {self.id!r} cannot fall back to itself")
        return self


class StdioTransport(Frozen):
    command: str
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, description="May hold ${VAR} placeholders.")


class StreamableHttpTransport(Frozen):
    url: str
    headers: dict[str, str] = Field(
        default_factory=dict, description="May hold ${VAR} placeholders."
    )


class KubernetesSidecar(Frozen):
    """How the ``kubernetes`` backend runs an MCP server: a native sidecar of the step's pod
    (an init container with ``restartPolicy: Always``) serving streamable HTTP on localhost,
    which the step connects to (docs/kubernetes.md, "MCP servers as sidecars")."""

    image: str = Field(
        pattern=r"^[^\s$]+$",
        description="Container image of the server, a tag or a digest "
        "(registry/mcp-server:1.2 or registry/mcp-server@sha256:…).",
    )
    command: list[str] | None = Field(
        default=None, description="Replaces the image's entrypoint (unset: the image's own)."
    )
    args: list[str] = Field(
        default_factory=list,
        description="Arguments that make the server serve streamable HTTP on `port`.",
    )
    port: int = Field(ge=1, le=65535, description="Port the server listens on, on localhost.")
    path: str = Field(
        default="/mcp",
        pattern=r"^/[^\s?#]*$",
        description="Path of the streamable HTTP endpoint.",
    )
    env: dict[EnvName, str] = Field(
        default_factory=dict,
        description="The server's environment. A ${VAR} placeholder is read from the Secret "
        "AGENTIC_K8S_SECRET_NAME (key VAR) by reference: no value enters the Job manifest.",
    )
    resources: dict[str, Any] | None = Field(
        default=None, description="Kubernetes requests/limits of the sidecar container."
    )

    @property
    def url(self) -> str:
        """Where the pod's containers reach it: ``http://127.0.0.1:<port><path>``."""
        return f"http://127.0.0.1:{self.port}{self.path}"

    @model_validator(mode="after")
    def _placeholders_only_in_env(self) -> KubernetesSidecar:
        for arg in [*(self.command or []), *self.args]:
            if "${" in arg:
                raise ValueError(
                    f"kubernetes: {arg!r} holds a ${{VAR}} placeholder; placeholders are read "
                    "from the Secret only in kubernetes.env (use the variable there, and "
                    "$(VAR) in args to pass it on)"
                )
        return self


class MCPProvider(Frozen):
    """An MCP server (``config/mcp_providers/<id>.yaml``): exactly one transport."""

    id: SafeId
    description: str = ""
    planner_hint: str | None = None
    capabilities: str | list[str] | None = Field(
        default=None, description="What the server's tools do, shown to the planner."
    )
    good_for: str | list[str] | None = Field(
        default=None, description="When to use the server, shown to the planner."
    )
    user_goal_keywords: list[str] = Field(
        default_factory=list,
        description="Words of goals that need the server, shown to the planner.",
    )
    required_env: list[EnvName] = Field(default_factory=list)
    required_env_any: list[EnvName] = Field(default_factory=list)
    stdio: StdioTransport | None = None
    streamable_http: StreamableHttpTransport | None = None
    kubernetes: KubernetesSidecar | None = Field(
        default=None,
        description="On the kubernetes backend, run the server as a sidecar of each step Job "
        "that uses it (either transport); a stdio provider without it cannot run there.",
    )
    tools: list[str] | None = Field(default=None, description="Only these tools (all when unset).")

    @model_validator(mode="after")
    def _exactly_one_transport(self) -> MCPProvider:
        if (self.stdio is None) == (self.streamable_http is None):
            raise ValueError("exactly one of 'stdio' or 'streamable_http' is required")
        return self

    @property
    def transport(self) -> Literal["stdio", "streamable_http"]:
        return "stdio" if self.stdio is not None else "streamable_http"


class TaskConfig(Frozen):
    """One task of a workflow: becomes one step of every run."""

    id: SafeId
    agent_provider_id: SafeId
    description: str
    expected_output: str
    mcp_providers: list[SafeId] | None = Field(
        default=None, description="MCP providers of this task; unset: all of the workflow's."
    )
    depends_on: list[SafeId] | None = None
    timeout_s: float | None = Field(default=None, gt=0)
    retries: int | None = Field(default=None, ge=0)
    pool: str | None = None
    tools: list[ToolRef] | None = Field(
        default=None,
        description="Python tools of this task, by id (tools/<id>.yaml); unset: the "
        "workflow's tools, []: none.",
    )
    guardrail: GuardrailRef | None = Field(
        default=None,
        description="Checks the output before it counts: a sentence (judged by the task "
        "agent's LLM) or {registered: <id>} (guardrails/<id>.yaml).",
    )
    guardrail_max_retries: int | None = Field(
        default=None,
        ge=0,
        description="Times CrewAI re-runs the task with the guardrail's feedback inside one "
        "attempt; unset: CrewAI's default (3).",
    )

    output_schema: OutputSchema | None = Field(
        default=None,
        description="A JSON Schema (top level type: object) the answer must match: the "
        "step's output is that JSON object (docs/runtime.md, 'Structured output'). CrewAI's "
        "output_json / output_pydantic.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_code(cls, data: Any) -> Any:
        """``python:`` on a task: refused with the reason (code is named by id only)."""
        return refuse_code_fields(data)


class Review(Frozen):
    """A post-run review: a provider scores the run's answer against its goal."""

    provider: SafeId = Field(description="The agent provider that reviews.")
    min_score: float | None = Field(
        default=None,
        ge=0,
        le=10,
        description="A score below this (0-10) fails the run with the reviewer's reasons.",
    )
    step: SafeId | None = Field(
        default=None, description="The review step (set when the run is prepared)."
    )
    of: SafeId | None = Field(
        default=None,
        description="The step whose output is reviewed: the run's answer (set when the run "
        "is prepared).",
    )


Process = Literal["sequential", "hierarchical"]
"""How a workflow's tasks run: CrewAI's two processes."""


def _is_sequential(value: str) -> bool:
    """``process: sequential`` is the default and left out of dumps, so a sequential
    workflow is stored and exported as before hierarchical crews existed."""
    return value == "sequential"


class HierarchicalCrew(Frozen):
    """The tasks of a ``process: hierarchical`` workflow, as resolved.

    CrewAI's hierarchical process gives every task to a manager agent, which delegates the
    work to the crew's other agents while it runs: the crew cannot be split into steps, so
    it runs as one step (``crew``) on one worker, on every backend.
    """

    manager_provider: SafeId = Field(description="The manager: CrewAI's manager_agent.")
    coworkers: list[SafeId] = Field(
        description="The agent providers the manager delegates to: those the workflow lists "
        "and those its tasks name, the manager left out."
    )
    tasks: list[TaskConfig] = Field(
        min_length=1,
        description="A task naming the manager is the manager's to delegate to any coworker; "
        "one naming a coworker is delegated to that coworker (CrewAI's rule).",
    )
    task_sequence: list[SafeId] = Field(description="The order the manager runs the tasks in.")


class WorkflowBody(Frozen):
    """The ``workflow:`` mapping of a workflow YAML file, before catalog resolution."""

    name: SafeId
    topic: str = ""
    description: str = ""
    agent_providers: list[AgentProvider | SafeId] = Field(default_factory=list)
    mcp_providers: list[MCPProvider | SafeId] = Field(default_factory=list)
    tools: list[ToolRef] = Field(
        default_factory=list,
        description="Python tools of every task that does not name its own, by id.",
    )
    tasks: list[TaskConfig] = Field(min_length=1)
    task_sequence: list[SafeId] | None = None
    max_cost_usd: float | None = Field(
        default=None,
        gt=0,
        description="Stop a run of this workflow, failed, once the cost of its attempts "
        "passes this many US dollars.",
    )
    review: Review | None = Field(
        default=None,
        description="Score the answer at the end of every run (docs/planner.md).",
    )
    process: Process = Field(
        default="sequential",
        exclude_if=_is_sequential,
        description="sequential: the tasks are steps (task_sequence, depends_on). "
        "hierarchical: CrewAI's hierarchical process, manager_provider delegating the tasks "
        "to the other agent providers at run time, run as one step (docs/runtime.md).",
    )
    manager_provider: SafeId | None = Field(
        default=None,
        validate_default=True,
        exclude_if=unset,
        description="The agent provider that manages a hierarchical crew (CrewAI's "
        "manager_agent); required with process: hierarchical, refused without it.",
    )

    @field_validator("manager_provider")
    @classmethod
    def _manager_with_hierarchical(cls, value: str | None, info: ValidationInfo) -> str | None:
        process = info.data.get("process")
        if process == "hierarchical" and value is None:
            raise ValueError(
                "required when process is hierarchical: the id of the agent provider that "
                "manages the crew and delegates its tasks"
            )
        if process == "sequential" and value is not None:
            raise ValueError("only a hierarchical crew has a manager: set process: hierarchical")
        return value


class WorkflowMeta(Frozen):
    """What a planner reads to choose a catalog workflow for a goal (the original tool's
    router data): a goal run may run this workflow instead of a plan of its own."""

    id: str | None = Field(default=None, description="The original tool's routing id.")
    summary: str = ""
    description: str = ""
    good_for: str | list[str] | None = None
    router_include: bool = Field(default=True, description="false: never offered to the planner.")


class WorkflowDefinition(Frozen):
    """A workflow YAML file."""

    meta: WorkflowMeta | None = Field(
        default=None,
        description="Offers the workflow to the goal planner (docs/planner.md, "
        "'Catalog workflows').",
    )
    workflow: WorkflowBody


class WorkflowConfig(Frozen):
    """A resolved workflow: self-contained, with every provider embedded.

    ``task_sequence`` is always set (defaults to the order of ``tasks``). The DAG is checked:
    unknown ids and cycles are errors (see :func:`agentic.catalog.dag.check_workflow`).
    """

    name: SafeId
    topic: str = ""
    description: str = ""
    agent_providers: list[AgentProvider]
    mcp_providers: list[MCPProvider] = Field(default_factory=list)
    tools: list[ToolRef] = Field(
        default_factory=list,
        description="Python tools of every task that does not name its own, by id: resolved "
        "where each step runs, from that process's own catalog.",
    )
    tasks: list[TaskConfig] = Field(min_length=1)
    task_sequence: list[SafeId]
    max_cost_usd: float | None = Field(default=None, gt=0)
    review: Review | None = None
    process: Process = Field(default="sequential", exclude_if=_is_sequential)
    crew: HierarchicalCrew | None = Field(
        default=None,
        exclude_if=unset,
        description="The tasks of a hierarchical workflow (process: hierarchical), run by "
        "its manager as the one step `crew` that `tasks` then holds.",
    )

    @model_validator(mode="after")
    def _crew_with_hierarchical(self) -> WorkflowConfig:
        if (self.process == "hierarchical") != (self.crew is not None):
            raise ValueError("'crew' is required with process: hierarchical, and only with it")
        return self

    def task(self, task_id: str) -> TaskConfig:
        """The task ``task_id`` (``KeyError`` when the workflow has none)."""
        return _by_id(self, "tasks", self.tasks)[task_id]

    def provider(self, provider_id: str) -> AgentProvider:
        """The agent provider ``provider_id`` (``KeyError`` when the workflow has none)."""
        return _by_id(self, "agent_providers", self.agent_providers)[provider_id]

    def provider_chain(self, task_id: str) -> list[str]:
        """The agent providers a task's attempts may run on: its own, then its fallbacks.

        Only the task's provider's ``fallback`` is followed (a fallback's own fallbacks are
        not), duplicates dropped.
        """
        first = self.task(task_id).agent_provider_id
        return list(dict.fromkeys([first, *self.provider(first).fallback]))

    def mcp_provider(self, provider_id: str) -> MCPProvider:
        """The MCP provider ``provider_id`` (``KeyError`` when the workflow has none)."""
        return _by_id(self, "mcp_providers", self.mcp_providers)[provider_id]

    @property
    def uses_depends_on(self) -> bool:
        return any(t.depends_on is not None for t in self.tasks)


def _by_id(model: BaseModel, field: str, items: list[Any]) -> dict[str, Any]:
    """``items`` (the list in ``model``'s ``field``) by id, the first of duplicates as a scan
    would find it: built once per list, so that going over every step of an 800-step
    workflow is linear, not quadratic. Kept beside the model's fields and rebuilt when the
    list is another (``model_copy(update=...)`` shares the cache but not the list)."""
    key = f"_index_of_{field}"
    cached = model.__dict__.get(key)
    if cached is None or cached[0] is not items:
        index: dict[str, Any] = {}
        for item in items:
            index.setdefault(item.id, item)
        cached = (items, index)
        model.__dict__[key] = cached
    return cast(dict[str, Any], cached[1])
