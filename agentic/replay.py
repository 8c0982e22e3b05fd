"""``agentic replay``: a new run that reuses an earlier run's committed results.

A replay of run ``OLD`` from step ``STEP`` is a new run (``run.json`` ``replay_of: OLD``)
with ``OLD``'s workflow and inputs, taken from ``OLD``'s ``run.json`` (never from the
catalog, which may have changed since), optionally changed with ``--set``. Its steps split
in two:

* **executed**: ``STEP`` and every step downstream of it (that depends on it, directly or
  through other steps), plus any other step that has no succeeded result in ``OLD``;
* **reused**: every other step. Its committed result is taken over without calling any
  model: ``result.json`` is written with ``reused_from`` naming the run that paid for it,
  and its artifacts are copied into the new run.

"Upstream of STEP" would be the wrong rule: in a DAG a step can be neither upstream nor
downstream of ``STEP`` (a parallel branch), and its result is as good as ever.

Without ``--from``, ``STEP`` is the first step in ``task_sequence`` that did not succeed,
which resumes a failed or cancelled run. The backend may differ from ``OLD``'s.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from agentic.backends import EventCallback, get_backend
from agentic.catalog import Catalog, check_workflow, require_workflow_env
from agentic.catalog.placement import check_runs_on
from agentic.catalog.safe_yaml import YAMLTooLargeError, load_yaml
from agentic.contracts import (
    ReplaySource,
    RunRecord,
    RunRequest,
    StepResult,
    StepState,
    WorkflowConfig,
    backend_name,
    first_error,
)
from agentic.errors import ConfigError, UnknownRunError
from agentic.graph import dependencies
from agentic.ids import check_id, new_run_id
from agentic.preparation import INPUT_NAME
from agentic.processes import is_running_here
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.store import RunStore


@dataclass(frozen=True)
class Replay:
    """A replay ready to run: the new run's record and what it takes over."""

    record: RunRecord
    source: RunRecord
    from_step: str
    reused: dict[str, StepResult]

    @property
    def executed(self) -> list[str]:
        """The steps the new run executes, in ``task_sequence`` order."""
        assert self.record.workflow is not None
        return [s for s in self.record.workflow.task_sequence if s not in self.reused]


def downstream(wf: WorkflowConfig, step_id: str) -> set[str]:
    """``step_id`` and every step that depends on it, directly or transitively."""
    dependents: dict[str, list[str]] = {s: [] for s in wf.task_sequence}
    for step, deps in dependencies(wf).items():
        for dep in deps:
            dependents[dep].append(step)
    found, todo = {step_id}, [step_id]
    while todo:
        for child in dependents[todo.pop()]:
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def read_source(store: RunStore, run_id: str) -> RunRecord:
    """The run to replay.

    Raises:
        UnknownRunError: the store holds no such run.
        ConfigError: the run has no workflow (its planning failed).
    """
    check_id(run_id, "run id")
    if not store.run_exists(run_id):
        raise UnknownRunError(f"no run {run_id!r} in the run store {store.url}", run_id=run_id)
    source = store.read_run(run_id)
    if source.workflow is None:
        raise ConfigError(
            f"run {run_id!r} has no workflow to replay (it failed before one was planned; "
            f"see `agentic show {run_id}`)"
        )
    return source


def first_unfinished_step(store: RunStore, source: RunRecord) -> str:
    """The first step of ``source`` in ``task_sequence`` without a succeeded result.

    Raises:
        ConfigError: every step succeeded (name one with ``--from``).
    """
    assert source.workflow is not None
    for step_id in source.workflow.task_sequence:
        result = store.read_result(source.run_id, step_id)
        if result is None or result.status != "succeeded":
            return step_id
    raise ConfigError(
        f"every step of run {source.run_id!r} succeeded: give --from STEP to execute again "
        f"from a step (steps: {', '.join(source.workflow.task_sequence)})"
    )


def reusable_results(
    store: RunStore, source_run_id: str, wf: WorkflowConfig, from_step: str
) -> dict[str, StepResult]:
    """Succeeded results of ``source_run_id`` for the steps of ``wf`` not downstream of
    ``from_step``, by step id in ``task_sequence`` order."""
    executed = downstream(wf, from_step)
    reused: dict[str, StepResult] = {}
    for step_id in wf.task_sequence:
        if step_id in executed:
            continue
        result = store.read_result(source_run_id, step_id)
        if result is not None and result.status == "succeeded":
            reused[step_id] = result
    return reused


def prepare_replay(
    store: RunStore,
    run_id: str,
    *,
    settings: Settings,
    from_step: str | None = None,
    backend: str | None = None,
    sets: Sequence[str] = (),
    catalog: Catalog | None = None,
    new_id: str | None = None,
) -> Replay:
    """Everything a replay of ``run_id`` needs, checked; writes nothing.

    Args:
        store: Holds the run to replay; the new run is written there too.
        run_id: The run to replay.
        settings: Backend names and defaults.
        from_step: The first step to execute again (default: the first that did not succeed).
        backend: Where the new run executes (default: where ``run_id`` ran).
        sets: ``PATH=VALUE`` changes to the workflow or inputs (see :func:`apply_sets`).
        catalog: Where agent or MCP providers named by ``sets`` but not embedded in the
            workflow are looked up (default: the catalog of ``settings``, if needed).
        new_id: The new run's id (default: a fresh one).

    Raises:
        UnknownRunError: no such run.
        ConfigError: unknown ``from_step``, a bad ``--set``, an unknown backend, nothing to
            execute again, or a workflow that cannot run here (missing variables, or a
            stdio MCP provider without a sidecar image on ``kubernetes``).
    """
    source = read_source(store, run_id)
    assert source.workflow is not None
    driver = source.driver
    if (
        not source.is_terminal
        and driver is not None
        and is_running_here(driver.host, driver.pid, driver.started)
    ):
        raise ConfigError(
            f"run {run_id!r} is still running: process {driver.pid} drives it. Replaying it "
            f"now would run its steps twice; wait for it, or `agentic cancel {run_id}` first"
        )
    workflow, inputs = apply_sets(source.workflow, source.inputs, sets, catalog, settings)
    step = from_step or first_unfinished_step(store, source)
    if step not in workflow.task_sequence:
        raise ConfigError(
            f"--from {step!r}: run {run_id!r} has no such step "
            f"(steps: {', '.join(workflow.task_sequence)})"
        )
    require_workflow_env(workflow)
    request = RunRequest(
        run_id=check_id(new_id, "run id") if new_id else None,
        workflow=workflow,
        inputs=inputs,
        backend=backend_name(backend or source.backend),
        labels=dict(source.labels),
        replay_of=ReplaySource(run_id=run_id, from_step=step),
    )
    record = RunRecord(
        run_id=request.run_id or new_run_id(),
        request=request,
        workflow=workflow,
        inputs=inputs,
        backend=request.backend or settings.execution_backend,
        replay_of=run_id,
        labels=dict(request.labels),
        steps=[StepState(step_id=s) for s in workflow.task_sequence],
    )
    check_runs_on(workflow, record.backend)
    reused = reusable_results(store, run_id, workflow, step)
    return Replay(record=record, source=source, from_step=step, reused=reused)


def run_replay(
    replay: Replay,
    store: RunStore,
    settings: Settings,
    on_event: EventCallback,
    *,
    on_start: Callable[[RunRecord], None] | None = None,
) -> RunRecord:
    """Create the replay's run and execute it to its end; return the finished record.

    A new id that already exists starts nothing: that run's record is returned.
    """
    if not store.create_run(replay.record):
        return store.read_run(replay.record.run_id)
    if on_start is not None:
        on_start(replay.record)
    return execute_reusing(replay.record, store, settings, on_event)


def reused_for(store: RunStore, record: RunRecord) -> dict[str, StepResult]:
    """The results ``record`` takes over, as its request's ``replay_of`` says.

    Every backend (and the ``nats`` coordinator) decides reuse with this one function:
    ``replay_of.from_step`` set: :func:`reusable_results`; unset: every succeeded result of
    the source run for a step of ``record``'s workflow.
    """
    source = record.request.replay_of
    if source is None or record.workflow is None:
        return {}
    if source.from_step is not None:
        return reusable_results(store, source.run_id, record.workflow, source.from_step)
    results = {s: store.read_result(source.run_id, s) for s in record.workflow.task_sequence}
    return {s: r for s, r in results.items() if r is not None and r.status == "succeeded"}


def execute_reusing(
    record: RunRecord, store: RunStore, settings: Settings, on_event: EventCallback
) -> RunRecord:
    """Run ``record`` (already created) on its backend, taking over what it reuses.

    What is reused comes from :func:`reused_for`. The reused results are committed to the
    new run (marked ``reused_from``) and their artifacts copied before the backend starts;
    every backend's ``run`` gets them (``reused``), and the ``nats`` coordinator takes over
    every result a run holds when it starts. No backend executes a
    reused step. Ctrl-C marks the run cancelled.
    """
    from agentic.recording.attempts import commit_reused
    from agentic.recording.cancel import CANCELLED_BY_USER, mark_cancelled

    backend = get_backend(record.backend)
    reused = reused_for(store, record)
    source = record.request.replay_of
    for step_id, result in reused.items():
        if result.artifacts and source is not None:
            store.copy_artifacts(source.run_id, record.run_id, step_id)
    # Committed before the run starts: a coordinator (nats) takes over every result a run
    # holds before it starts; the local backends commit them again, which is a no-op.
    commit_reused(store, record.run_id, reused)
    try:
        return backend.run(record, store, settings, on_event, reused=reused)
    except KeyboardInterrupt:
        return mark_cancelled(store, record.run_id, CANCELLED_BY_USER)


# --- --set -------------------------------------------------------------------------------


def apply_sets(
    wf: WorkflowConfig,
    inputs: Mapping[str, str],
    assignments: Sequence[str],
    catalog: Catalog | None = None,
    settings: Settings | None = None,
) -> tuple[WorkflowConfig, dict[str, str]]:
    """``wf`` and ``inputs`` changed by ``PATH=VALUE`` assignments.

    Paths: ``topic`` and ``inputs.NAME`` set an input; otherwise a path into the workflow
    where list entries are named by id: ``tasks.write.agent_provider_id``,
    ``agent_providers.writer.model``, ``mcp_providers.tools.stdio.args``, ``description``.
    A value is used as the text given, or, when the field wants another type, parsed as
    YAML (``retries=2``, ``mcp_providers=[tools]``) with the catalog's loader
    (:func:`~agentic.catalog.safe_yaml.load_yaml`, which refuses an alias bomb). An agent or
    MCP provider the workflow does not embed is taken from the catalog.

    Raises:
        ConfigError: a malformed assignment, an unknown path, an id change, a value the
            field refuses, or a workflow that is no longer valid (each names the item).
    """
    data = wf.model_dump(mode="json")
    values = dict(inputs)
    for item in assignments:
        path, sep, value = item.partition("=")
        keys = path.strip().split(".")
        if not sep or not all(keys):
            raise ConfigError(f"--set {item!r}: expected PATH=VALUE, e.g. tasks.write.retries=1")
        if keys == ["topic"] or keys[0] == "inputs":
            values[_input_name(keys, item)] = value
        else:
            data = _assigned(data, keys, value, item)
    changed = WorkflowConfig.model_validate(data)
    if assignments:
        changed = _with_catalog_providers(changed, catalog, settings)
        check_workflow(changed, source="--set")
    return changed, values


def _input_name(keys: list[str], item: str) -> str:
    name = keys[-1]
    if len(keys) > 2 or not INPUT_NAME.fullmatch(name):
        raise ConfigError(f"--set {item!r}: an input is `topic=...` or `inputs.NAME=...`")
    return name


def _assigned(data: dict[str, Any], keys: list[str], value: str, item: str) -> dict[str, Any]:
    if keys[-1] == "id":
        raise ConfigError(f"--set {item!r}: ids cannot be changed by a replay")
    candidates: list[Any] = [value]
    try:
        parsed = load_yaml(value)
    except YAMLTooLargeError as exc:  # an alias bomb is no value for any field
        raise ConfigError(f"--set {item!r}: {exc.problem}") from exc
    except yaml.YAMLError:
        parsed = value
    if parsed != value:
        candidates.append(parsed)
    problem = ""
    for candidate in candidates:
        trial = copy.deepcopy(data)
        container, key = _locate(trial, keys, item)
        container[key] = candidate
        try:
            WorkflowConfig.model_validate(trial)
        except ValidationError as exc:
            problem = problem or first_error(exc)
            continue
        return trial
    raise ConfigError(f"--set {item!r}: {problem}")


def _locate(data: dict[str, Any], keys: list[str], item: str) -> tuple[dict[str, Any], str]:
    """The mapping holding the last key of ``keys`` inside the workflow dump."""
    node: Any = data
    for depth, key in enumerate(keys[:-1]):
        node = _child(node, key, ".".join(keys[: depth + 1]), item)
    last = keys[-1]
    if not isinstance(node, dict) or last not in node:
        raise ConfigError(f"--set {item!r}: no field {'.'.join(keys)!r} in the workflow")
    return node, last


def _child(node: Any, key: str, where: str, item: str) -> Any:
    if isinstance(node, dict) and isinstance(node.get(key), (dict, list)):
        return node[key]
    if isinstance(node, list) and all(isinstance(e, dict) and "id" in e for e in node):
        for entry in node:
            if entry["id"] == key:
                return entry
        known = ", ".join(str(e["id"]) for e in node) or "none"
        raise ConfigError(
            f"--set {item!r}: no entry {key!r} in {where.rsplit('.', 1)[0]} (known: {known})"
        )
    raise ConfigError(f"--set {item!r}: {where!r} is not a mapping or a list of entries")


def _with_catalog_providers(
    wf: WorkflowConfig, catalog: Catalog | None, settings: Settings | None
) -> WorkflowConfig:
    """``wf`` with the catalog entries its tasks name but it does not embed."""
    agents = {p.id for p in wf.agent_providers}
    mcps = {p.id for p in wf.mcp_providers}
    want_agents = [t.agent_provider_id for t in wf.tasks if t.agent_provider_id not in agents]
    want_mcps = [m for t in wf.tasks for m in t.mcp_providers or [] if m not in mcps]
    if not want_agents and not want_mcps:
        return wf
    catalog = catalog if catalog is not None else _catalog(settings)
    added_agents = [
        catalog.agent_providers[a]
        for a in dict.fromkeys(want_agents)
        if a in catalog.agent_providers
    ]
    added_mcps = [
        catalog.mcp_providers[m] for m in dict.fromkeys(want_mcps) if m in catalog.mcp_providers
    ]
    return wf.model_copy(
        update={
            "agent_providers": [*wf.agent_providers, *added_agents],
            "mcp_providers": [*wf.mcp_providers, *added_mcps],
        }
    )


def _catalog(settings: Settings | None) -> Catalog:
    from agentic.catalog import catalog_dirs, load_catalog
    from agentic.settings import get_settings

    return load_catalog(catalog_dirs(settings or get_settings()), missing_ok=True)
