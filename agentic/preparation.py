"""From what a user or a client asked for to a pending run: validate, resolve, plan.

:func:`prepare_run` turns a :class:`~agentic.contracts.RunRequest` into a pending
:class:`~agentic.contracts.RunRecord` and writes nothing: every problem with the request
(unknown workflow, bad input name, unsafe run id, unknown backend) is a
:class:`~agentic.errors.ConfigError` raised before the run exists. A request with a ``goal``
is planned by a :data:`GoalPlanner`; by default that is ``agentic.planning.plan_goal``,
looked up when a goal arrives (:func:`default_planner`), so this module never imports the
planner: the planner imports it. Executing a prepared run is :mod:`agentic.execution`.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from agentic.catalog import Catalog, catalog_dirs, load_catalog, load_workflow, resolve_workflow
from agentic.catalog.dag import check_workflow
from agentic.catalog.env import WORKER_BACKENDS, WORKERS_ENV
from agentic.catalog.placement import check_runs_on
from agentic.catalog.resolve import code_issues
from agentic.contracts import (
    PLACEHOLDER,
    RunRecord,
    RunRequest,
    StepState,
    WorkflowConfig,
    WorkflowDefinition,
    backend_name,
    first_error,
)
from agentic.errors import CatalogError, ConfigError
from agentic.ids import check_id, new_run_id
from agentic.review import with_review
from agentic.settings import Settings

INPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""Input names must be usable as ``{name}`` placeholders in task descriptions."""


@dataclass(frozen=True)
class PlannedWorkflow:
    """What a goal planner returns: the workflow to run and the plan to keep in ``run.json``."""

    workflow: WorkflowConfig
    plan: dict[str, Any] | None = None


class GoalPlanner(Protocol):
    """Turns ``request.goal`` into a workflow built from ``catalog``.

    Raises :class:`~agentic.errors.PlanError` when the planner's output cannot become a
    workflow, and :class:`~agentic.errors.ConfigError` when planning cannot start.
    """

    def __call__(
        self, request: RunRequest, *, catalog: Catalog, settings: Settings
    ) -> PlannedWorkflow: ...


def parse_assignments(pairs: Iterable[str], option: str) -> dict[str, str]:
    """``["k=v", ...]`` as a dict; the value may contain ``=``.

    Raises:
        ConfigError: an item without ``=`` or with an empty or non-identifier name.
    """
    parsed: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip()
        if not sep or not INPUT_NAME.fullmatch(name):
            raise ConfigError(
                f"{option} {pair!r}: expected NAME=VALUE with NAME a letter or underscore "
                "followed by letters, digits or underscores"
            )
        parsed[name] = value
    return parsed


def build_request(workflow: str | None, catalog: Catalog, **fields: Any) -> RunRequest:
    """A :class:`RunRequest` from what a user typed, every problem as a ConfigError.

    Args:
        workflow: A catalog name (kept as ``workflow_ref``) or a YAML path (loaded and
            resolved now, and sent inline: the run must not depend on a file that may
            change); ``None`` with a ``goal``.
        catalog: Resolves a workflow file's provider ids.
        fields: Other :class:`RunRequest` fields; ``None`` values are left out.

    Raises:
        ConfigError: an unsafe ``run_id``, an unknown ``backend``, a bad workflow file or
            an invalid field.
    """
    if fields.get("run_id") is not None:
        check_id(fields["run_id"], "run id")
    backend = fields.get("backend")
    if backend is not None:
        backend_name(backend)
    if workflow is not None and is_workflow_path(workflow):
        fields["workflow"] = load_workflow(workflow, catalog)
    elif workflow is not None:
        fields["workflow_ref"] = check_id(workflow, "workflow name")
    try:
        return RunRequest(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        raise ConfigError(f"invalid run request: {first_error(exc)}") from exc


def is_workflow_path(ref: str) -> bool:
    """True when ``ref`` names a YAML file rather than a catalog workflow."""
    return ref.endswith((".yaml", ".yml")) or "/" in ref or os.sep in ref


def prepare_run(
    request: RunRequest,
    *,
    settings: Settings,
    catalog: Catalog,
    planner: GoalPlanner | None = None,
) -> RunRecord:
    """Validate ``request`` and resolve its workflow into a new, pending run record.

    Args:
        request: What to run.
        settings: The default backend.
        catalog: Where ``workflow_ref`` names and provider ids are looked up.
        planner: Plans ``goal`` requests (default: ``agentic.planning.plan_goal``).

    Raises:
        ConfigError: unknown workflow or backend, bad inputs, unsafe run id, a goal
            without an available planner, or a step using an MCP server the backend cannot
            run (a stdio provider without a sidecar image on ``kubernetes``).
        PlanError: the planner's output cannot become a workflow.
    """
    _check_inputs(request.inputs)
    backend = request.backend or settings.execution_backend
    plan: dict[str, Any] | None = None
    if request.goal is not None:
        request = with_run_id(request)  # a planner session records the goal's run id
        planned = (planner or default_planner())(request, catalog=catalog, settings=settings)
        workflow, plan = planned.workflow, planned.plan
    else:
        workflow = _resolve(request, catalog)
    check_placeholders(workflow, request.inputs)
    check_runs_on(workflow, backend)  # a stdio MCP server on kubernetes needs a sidecar image
    if request.max_cost_usd is not None:
        workflow = workflow.model_copy(update={"max_cost_usd": request.max_cost_usd})
    review = request.review or workflow.review
    if review is not None:
        workflow = with_review(
            add_reviewer(workflow, review.provider, catalog), review, goal=request.goal
        )
    run_id = check_id(request.run_id, "run id") if request.run_id else new_run_id()
    return RunRecord(
        run_id=run_id,
        request=request,
        workflow=workflow,
        inputs=dict(request.inputs),
        backend=backend,
        replay_of=request.replay_of.run_id if request.replay_of else None,
        labels=dict(request.labels),
        steps=[StepState(step_id=step) for step in workflow.task_sequence],
        plan=plan,
    )


AGENT_TEXTS = ("role", "goal", "backstory")
"""An agent's texts that take ``{placeholders}``."""


@dataclass(frozen=True)
class Unfilled:
    """``{placeholders}`` that one text of a workflow uses and no input fills."""

    owner: str
    """``task 'write'``, or ``agent provider 'editor'`` (a step's agent: CrewAI's kickoff
    fills its role, goal and backstory as it fills the task's texts)."""
    field: str
    """``description``, ``expected_output``, ``role``, ``goal`` or ``backstory``."""
    names: list[str]

    @property
    def placeholders(self) -> str:
        """``{a}, {b}``."""
        return ", ".join("{" + name + "}" for name in self.names)


def unfilled_placeholders(wf: WorkflowConfig, inputs: Iterable[str]) -> list[Unfilled]:
    """Every text of ``wf`` that uses a ``{placeholder}`` neither ``inputs`` nor ``topic``
    fills: its tasks' texts, then those of the agents its steps run on (fallbacks too).

    The one check of placeholders: a run refuses what it finds (:func:`check_placeholders`)
    and `agentic validate` warns of it (with no inputs: workflows declare none but
    ``topic``).
    """
    known = {"topic", *inputs}
    texts: list[tuple[str, str, str]] = []
    crew = wf.crew
    tasks = [*wf.tasks, *(crew.tasks if crew is not None else [])]  # a crew's own tasks too
    for task in tasks:
        owner = f"task {task.id!r}"
        texts += [(owner, "description", task.description)]
        texts += [(owner, "expected_output", task.expected_output)]
    providers = {p.id: p for p in wf.agent_providers}
    used: dict[str, None] = {}
    for task in tasks:  # its provider, then its fallbacks (as provider_chain reads them)
        own = providers.get(task.agent_provider_id)
        used.update(dict.fromkeys([task.agent_provider_id, *(own.fallback if own else [])]))
    used.update(dict.fromkeys(crew.coworkers if crew is not None else []))
    for provider in (providers[p] for p in used if p in providers):
        owner = f"agent provider {provider.id!r}"
        texts += [(owner, name, getattr(provider, name)) for name in AGENT_TEXTS]
    found = []
    for owner, field, text in texts:
        missing = sorted(set(PLACEHOLDER.findall(text)) - known)
        if missing:
            found.append(Unfilled(owner, field, missing))
    return found


def check_placeholders(wf: WorkflowConfig, inputs: Mapping[str, str]) -> None:
    """Refuse a workflow whose texts use a ``{placeholder}`` that no input fills.

    Every backend then behaves alike (CrewAI's kickoff refuses one; a step sent elsewhere
    would carry the literal ``{name}`` to the model), and a misspelt ``--input`` is caught
    before anything runs.

    Raises:
        ConfigError: naming the task (or agent provider), the field and the inputs given.
    """
    gaps = unfilled_placeholders(wf, inputs)
    if gaps:
        gap = gaps[0]
        given = ", ".join(sorted({"topic", *inputs}))
        raise ConfigError(
            f"{gap.owner} ({gap.field}) uses {gap.placeholders}, which no input fills "
            f"(inputs: {given}): pass --input {gap.names[0]}=…, or write it without braces"
        )


def add_reviewer(wf: WorkflowConfig, provider_id: str, catalog: Catalog) -> WorkflowConfig:
    """``wf`` with the reviewer among its providers (a planned workflow holds only the
    providers its steps use).

    Raises:
        ConfigError: the catalog has no such provider.
    """
    if any(p.id == provider_id for p in wf.agent_providers):
        return wf
    found = catalog.agent_providers.get(provider_id)
    if found is None:
        known = ", ".join(sorted(catalog.agent_providers)) or "none"
        raise ConfigError(f"unknown review provider {provider_id!r} (agent providers: {known})")
    return wf.model_copy(update={"agent_providers": [*wf.agent_providers, found]})


def check_same_run(existing: RunRecord, request: RunRequest) -> None:
    """Refuse a request whose ``run_id`` names a run of something else.

    Submitting the same request twice is one run (DESIGN §3: the second gets the first's
    record); a request for another workflow or goal under the same id is a mistake, not a
    way to read an unrelated run.

    Raises:
        ConfigError: naming what the existing run is.
    """
    asked = _source_of(request)
    if asked is None:
        return
    workflow = existing.workflow
    if asked[0] == "workflow" and workflow is not None and workflow.name == asked[1]:
        return  # its workflow (a goal's run handed over with its plan, a file or a ref)
    found = _source_of(existing.request, workflow)
    if found is not None and asked != found:
        raise ConfigError(
            f"run {existing.run_id!r} exists and is a run of {found[0]} {found[1]!r}, not of "
            f"{asked[0]} {asked[1]!r}: choose another --run-id (or `agentic show "
            f"{existing.run_id}`)"
        )


def _source_of(
    request: RunRequest, workflow: WorkflowConfig | None = None
) -> tuple[str, str] | None:
    if request.goal is not None:
        return "goal", request.goal
    if request.workflow_ref is not None:
        return "workflow", request.workflow_ref
    inline = request.workflow
    if isinstance(inline, WorkflowConfig):
        return "workflow", inline.name
    if isinstance(inline, WorkflowDefinition):
        return "workflow", inline.workflow.name
    return ("workflow", workflow.name) if workflow is not None else None


def with_run_id(request: RunRequest) -> RunRequest:
    """``request`` with its ``run_id`` (checked), or a new one when it has none."""
    if request.run_id is not None:
        check_id(request.run_id, "run id")
        return request
    return request.model_copy(update={"run_id": new_run_id()})


def is_iterative(request: RunRequest) -> bool:
    """True for a goal planned round by round while it runs (``--iterative``)."""
    return request.goal is not None and request.planner is not None and request.planner.iterative


def default_planner() -> GoalPlanner:
    """``agentic.planning.plan_goal``, imported on first use (it may load an LLM client).

    Raises:
        ConfigError: the planner module is not part of this installation.
    """
    try:
        module = importlib.import_module("agentic.planning")
    except ModuleNotFoundError as exc:
        if exc.name not in ("agentic.planning", "agentic"):
            raise
        raise ConfigError(
            "running a --goal needs the planner (agentic.planning), which this installation "
            "does not include; run a workflow by name or path instead"
        ) from exc
    planner: GoalPlanner = module.plan_goal
    return planner


def load_run_catalog(
    settings: Settings, workflow: str | None = None, backend: str | None = None
) -> Catalog:
    """The catalog a run is resolved against.

    A workflow given as a file may run outside a checkout, so missing catalog roots are
    skipped for it; a catalog name or a goal needs its roots. On a backend whose steps run
    on workers (``nats``, ``kubernetes``; default: the settings'), the variables a provider
    needs are the workers' business: this process need not have them.
    """
    by_path = workflow is not None and is_workflow_path(workflow)
    remote = (backend or settings.execution_backend) in WORKER_BACKENDS
    env = WORKERS_ENV if remote else None
    return load_catalog(catalog_dirs(settings), env=env, missing_ok=by_path)


def _check_inputs(inputs: Mapping[str, str]) -> None:
    for name in inputs:
        if not INPUT_NAME.fullmatch(name):
            raise ConfigError(
                f"input name {name!r}: use a letter or underscore followed by letters, "
                "digits or underscores (it becomes a {name} placeholder)"
            )


def _resolve(request: RunRequest, catalog: Catalog) -> WorkflowConfig:
    if isinstance(request.workflow, WorkflowConfig):
        check_workflow(request.workflow)
        unknown = code_issues(request.workflow, catalog)  # tool and guardrail ids it knows
        if unknown:
            raise CatalogError(unknown[0][1], file="<request>.workflow", field=unknown[0][0])
        return request.workflow
    if isinstance(request.workflow, WorkflowDefinition):
        return resolve_workflow(request.workflow, catalog, source="<request>.workflow")
    if request.workflow_ref is not None:
        return load_workflow(request.workflow_ref, catalog)
    # Only a replay request carries no source; it reuses its source run's workflow.
    raise ConfigError("a replay request is resolved by `agentic replay`, not by `agentic run`")
