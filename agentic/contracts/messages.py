"""Runtime contracts that cross process and machine boundaries (DESIGN §3).

Frozen, ``extra="forbid"``, each with ``schema_version``. JSON Schemas exported from these
models live in ``agentic/schemas/`` and a test fails when they drift.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, get_args

from pydantic import Field, model_validator

from agentic import failures
from agentic.contracts.base import SCHEMA_VERSION, Frozen, unset
from agentic.contracts.catalog import Review, WorkflowConfig, WorkflowDefinition
from agentic.contracts.output_schema import OutputSchema
from agentic.contracts.tools import GuardrailRef, ToolRef
from agentic.errors import ConfigError
from agentic.ids import SafeId

EventType = Literal[
    "requested",
    "planned",
    "step_ready",
    "step_started",
    "step_progress",
    "step_succeeded",
    "step_failed",
    "step_retrying",
    "succeeded",
    "failed",
    "cancelled",
]
TERMINAL_EVENTS: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

BackendName = Literal["inprocess", "subprocess", "kubernetes", "nats"]
"""Every execution backend (``--backend``, ``AGENTIC_EXECUTION_BACKEND``, ``run.json``)."""
BACKEND_NAMES: tuple[str, ...] = get_args(BackendName)

RunStatus = Literal["pending", "running", "succeeded", "failed", "cancelled"]
StepStatus = Literal[
    "pending", "ready", "running", "retrying", "succeeded", "failed", "cancelled", "skipped"
]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


def backend_name(value: str) -> BackendName:
    """``value`` if it names a backend.

    Raises:
        ConfigError: it does not (the message lists the backends).
    """
    if value not in BACKEND_NAMES:
        raise ConfigError(f"unknown backend {value!r}; valid backends: {', '.join(BACKEND_NAMES)}")
    return value  # type: ignore[return-value]  # checked against the Literal's values


def utcnow() -> datetime:
    return datetime.now(UTC)


class TaskText(Frozen):
    description: str
    expected_output: str
    output_schema: OutputSchema | None = Field(
        default=None,
        exclude_if=unset,
        description="The task's output_schema: the answer must be a JSON object matching it "
        "(checked again here: a spec is untrusted input).",
    )


class ResolvedMCP(Frozen):
    id: SafeId
    resolved: dict[str, Any] = Field(
        description="The MCP provider entry, ${VAR} placeholders kept."
    )


class CrewMember(Frozen):
    """A coworker of a hierarchical crew: an agent the manager may delegate to."""

    agent_provider: dict[str, Any] = Field(description="The resolved agent provider entry.")
    mcp_providers: list[SafeId] = Field(
        default_factory=list, description="Its MCP providers, ids among the spec's."
    )


class CrewTask(Frozen):
    """A task of a hierarchical crew, its texts filled from the run's inputs."""

    id: SafeId
    description: str
    expected_output: str
    agent_provider_id: SafeId | None = Field(
        default=None,
        description="The coworker the manager delegates this task to; unset: the manager "
        "delegates it to any coworker.",
    )
    context: list[SafeId] | None = Field(
        default=None,
        description="The earlier tasks whose outputs it sees; unset: every earlier task's "
        "(CrewAI's default).",
    )


class CrewSpec(Frozen):
    """What a hierarchical crew's one step runs: the spec's agent provider manages it."""

    coworkers: list[CrewMember] = Field(min_length=1)
    tasks: list[CrewTask] = Field(min_length=1, description="In the order they run.")


class StepSpec(Frozen):
    """Everything a worker needs to run one attempt of one step; never a secret value."""

    schema_version: int = SCHEMA_VERSION
    run_id: SafeId
    step_id: SafeId
    step_index: int = Field(ge=0)
    attempt: int = Field(ge=1)
    workflow_name: SafeId
    topic: str
    inputs: dict[str, str] = Field(default_factory=dict)
    task: TaskText
    agent_provider: dict[str, Any] = Field(description="The resolved agent provider entry.")
    mcp_providers: list[ResolvedMCP] = Field(default_factory=list)
    tools: list[ToolRef] = Field(
        default_factory=list,
        description="Python tools by id: the process that runs the step resolves each in its "
        "own catalog (tools/<id>.yaml) and imports it from installed code; never code.",
    )
    guardrail: GuardrailRef | None = Field(
        default=None,
        description="The task's guardrail: a sentence, or {registered: <id>}, resolved as "
        "tools are.",
    )
    guardrail_max_retries: int | None = Field(
        default=None, ge=0, description="CrewAI's re-runs after a failed guardrail."
    )
    depends_on: list[SafeId] = Field(default_factory=list)
    prior_outputs: dict[str, str] = Field(
        default_factory=dict,
        description="Outputs of dependencies, already merged into task.description (a "
        "spec written before prior_steps; the inprocess crew's resumed tasks).",
    )
    prior_steps: list[SafeId] = Field(
        default_factory=list,
        description="The steps whose committed outputs this step sees, in order: the "
        "runtime reads them from the run store, so the spec stays the same size whatever "
        "their outputs (by reference).",
    )
    prior_all_earlier: bool = Field(
        default=False,
        description="The step sees every step before it in the run's task_sequence (a "
        "workflow without depends_on): prior_steps is left empty and the runtime takes "
        "their ids from the run's run.json, so a spec's size does not grow with its position.",
    )
    prior_output_max_chars: int | None = Field(
        default=None,
        ge=1,
        description="Each output of prior_steps is cut to this many characters.",
    )
    timeout_s: float | None = None
    pool: str = "default"
    store_url: str
    crew: CrewSpec | None = Field(
        default=None,
        exclude_if=unset,
        description="A hierarchical crew (process: hierarchical): agent_provider manages it, "
        "task and depends_on are unused; mcp_providers are its coworkers'.",
    )


class StepError(Frozen):
    type: str
    message: str
    retryable: bool = False
    provider_failed: bool = Field(
        default=False,
        # Written only when true: every other error reads (and is stored) as before it
        # existed, by readers old and new.
        exclude_if=lambda failed: not failed,
        description="The model provider failed (429, 5xx, request timeout, refused "
        "connection) past its own retries: the step's next attempt moves down the "
        "provider's fallback chain.",
    )


class Artifact(Frozen):
    path: str = Field(description="Path relative to the run's artifacts/<step_id>/ folder.")
    mime: str = "application/octet-stream"
    size: int = Field(ge=0)


class Usage(Frozen):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    requests: int | None = Field(
        default=None, ge=0, description="Model requests that answered (unset: not counted)."
    )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Timing(Frozen):
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


class WorkerInfo(Frozen):
    host: str
    pid: int
    pod: str | None = None


class DriverInfo(Frozen):
    """The local process that drives a run (``agentic run`` or ``replay`` on the
    ``inprocess``, ``subprocess`` or ``kubernetes`` backend): when it is gone and the run
    is still ``running``, nobody will finish the run and it is shown abandoned."""

    host: str
    pid: int
    started: int | None = Field(
        None,
        description="Start of the process in clock ticks since boot: with the pid, "
        "one process (a pid is reused later).",
    )


class StepResult(Frozen):
    """The outcome of one attempt of one step."""

    schema_version: int = SCHEMA_VERSION
    run_id: SafeId
    step_id: SafeId
    attempt: int = Field(ge=1)
    status: Literal["succeeded", "failed"]
    output: str = ""
    error: StepError | None = None
    artifacts: list[Artifact] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    timing: Timing = Field(default_factory=Timing)
    worker: WorkerInfo | None = None
    reused_from: SafeId | None = Field(
        default=None, description="Run id whose committed result a replay reused (no LLM call)."
    )
    provider: SafeId | None = Field(
        default=None,
        description="The agent provider this attempt ran on (a fallback's, after a provider "
        "failure); unset in results written before fallback chains existed.",
    )
    output_json: dict[str, Any] | None = Field(
        default=None,
        exclude_if=unset,
        description="The answer of a task with an output_schema, as JSON (validated against "
        "it); `output` holds the same object as JSON text. Unset otherwise.",
    )

    @classmethod
    def failed(
        cls,
        run_id: str,
        step_id: str,
        attempt: int,
        error: StepError,
        *,
        timing: Timing,
        worker: WorkerInfo | None,
        provider: str | None = None,
    ) -> StepResult:
        """The result of an attempt that failed with ``error``."""
        return cls(
            run_id=run_id,
            step_id=step_id,
            attempt=attempt,
            status="failed",
            error=error,
            timing=timing,
            worker=worker,
            reused_from=None,
            provider=provider,
        )

    @property
    def failure(self) -> StepError:
        """Why the attempt failed (a result that says nothing reads as ``StepFailed``)."""
        return self.error or StepError(type=failures.UNRECORDED, message="no error recorded")

    @model_validator(mode="after")
    def _failed_has_error(self) -> StepResult:
        if self.status == "failed" and self.error is None:
            raise ValueError("a failed StepResult needs an 'error'")
        return self


class ReplaySource(Frozen):
    """What a replay reuses: the committed results of ``run_id`` before ``from_step``."""

    run_id: SafeId
    from_step: SafeId | None = None


class PlannerOptions(Frozen):
    iterative: bool = False
    max_rounds: int = Field(default=5, ge=1)
    session: SafeId | None = None
    knowledge: bool = Field(
        default=True,
        description="Show the planner what the knowledge base holds on the goal and the "
        "providers' track records (`agentic run --no-kb`: no).",
    )


class RunRequest(Frozen):
    """Asks for one run. Submitting the same ``run_id`` twice starts one run."""

    schema_version: int = SCHEMA_VERSION
    run_id: SafeId | None = None
    workflow: WorkflowDefinition | WorkflowConfig | None = None
    workflow_ref: SafeId | None = None
    goal: str | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    backend: BackendName | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    replay_of: ReplaySource | None = None
    planner: PlannerOptions | None = None
    max_cost_usd: float | None = Field(
        default=None,
        gt=0,
        description="Fail the run once its attempts cost more than this many US dollars; "
        "overrides the workflow's own max_cost_usd.",
    )
    review: Review | None = Field(
        default=None, description="Review the answer at the end; overrides the workflow's."
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> RunRequest:
        given = [n for n in ("workflow", "workflow_ref", "goal") if getattr(self, n) is not None]
        if self.replay_of is None and len(given) != 1:
            raise ValueError("exactly one of 'workflow', 'workflow_ref' or 'goal' is required")
        if len(given) > 1:
            raise ValueError("at most one of 'workflow', 'workflow_ref' or 'goal' may be given")
        return self


class RunEvent(Frozen):
    """One thing that happened to a run; published on ``agentic.events.<run_id>.<type>``."""

    schema_version: int = SCHEMA_VERSION
    run_id: SafeId
    seq: int = Field(ge=0)
    type: EventType
    ts: datetime = Field(default_factory=utcnow)
    step_id: SafeId | None = None
    attempt: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class StepState(Frozen):
    """A step's state as the run record shows it."""

    step_id: SafeId
    status: StepStatus = "pending"
    attempt: int = 0


class RunRecord(Frozen):
    """What ``run.json`` holds."""

    schema_version: int = SCHEMA_VERSION
    run_id: SafeId
    status: RunStatus = "pending"
    request: RunRequest
    workflow: WorkflowConfig | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    backend: BackendName
    replay_of: SafeId | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    driver: DriverInfo | None = None
    traceparent: str | None = Field(
        default=None,
        pattern=r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
        description="The W3C trace context of the run's root span: every span of the run "
        "is in its trace, across processes and coordinator restarts (docs/observability.md, "
        '"Traces"). None when the run is not traced.',
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    steps: list[StepState] = Field(default_factory=list)
    output: str | None = None
    output_bytes: int | None = Field(
        default=None,
        description="Set when ``output`` is only the start of the run's output: the whole "
        "output's size in bytes (UTF-8). It did not fit the store's document limit along with "
        "the rest of run.json; the whole output is the committed result of the run's output "
        "step (``agentic show RUN --output STEP``).",
    )
    error: str | None = None
    plan: dict[str, Any] | None = Field(
        default=None, description="The planner's plan and raw output, for goals."
    )
    review: dict[str, Any] | None = Field(
        default=None,
        description="The post-run review: {provider, score, min_score, reasons, passed}.",
    )

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def workflow_name(self) -> str:
        """The run's workflow name (``goal`` for a goal not planned yet)."""
        if self.workflow is not None:
            return self.workflow.name
        return self.request.workflow_ref or ("goal" if self.request.goal else "?")


class RunHeadline(Frozen):
    """A run in a few hundred bytes: an entry of the runs index (:mod:`agentic.store.index`)
    and a row of ``agentic runs``, so that listing runs reads no ``run.json`` of a run that
    has ended."""

    run_id: SafeId
    workflow: str
    status: RunStatus
    backend: BackendName
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    steps_succeeded: int = 0
    steps_total: int = 0
    replay_of: SafeId | None = None
    driver: DriverInfo | None = None

    @classmethod
    def of(cls, record: RunRecord) -> RunHeadline:
        return cls(
            run_id=record.run_id,
            workflow=record.workflow_name,
            status=record.status,
            backend=record.backend,
            created_at=record.created_at,
            updated_at=record.updated_at,
            finished_at=record.finished_at,
            steps_succeeded=sum(1 for s in record.steps if s.status == "succeeded"),
            steps_total=len(record.steps),
            replay_of=record.replay_of,
            driver=record.driver,
        )

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES
