"""What the console's forms do, checked first: start a run, cancel one, replay one.

Every value comes from a browser and is checked here before anything runs; a refusal is a
:class:`ActionError` (the page answers 400 with its message). Only what the local catalog
names is run: a workflow is a name of this console's catalog (never a path or an inline
definition), a goal is text for the planner, and replays change a run only through
``--set`` items that :func:`agentic.replay.prepare_replay` accepts, exactly as the CLI's.

Starting and replaying go through the CLI itself (:mod:`agentic.console.launch`); a cancel
takes the path of ``agentic cancel``: the store's ``cancel.json`` for a run a local process
drives, the coordinator over NATS for a ``nats`` run.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentic.catalog import Catalog, catalog_dirs, load_catalog, load_workflow
from agentic.contracts import BACKEND_NAMES, RunRecord
from agentic.errors import ConfigError
from agentic.ids import is_safe_id, new_run_id
from agentic.preparation import INPUT_NAME, build_request, prepare_run, unfilled_placeholders

if TYPE_CHECKING:
    from agentic.settings import Settings
    from agentic.store import RunStore

MAX_GOAL_CHARS = 4000
MAX_INPUT_CHARS = 10_000
MAX_SETS = 20
MAX_SET_CHARS = 2000


class ActionError(ConfigError):
    """A form the console refuses (400, with this message)."""


@dataclass(frozen=True)
class StartRequest:
    """A checked start form: a catalog workflow with inputs, or a goal in a session."""

    run_id: str
    backend: str
    workflow: str | None = None
    inputs: Mapping[str, str] | None = None
    goal: str | None = None
    session: str | None = None


def load_local_catalog(settings: Settings) -> Catalog:
    return load_catalog(catalog_dirs(settings))


def workflow_inputs(catalog: Catalog, name: str) -> list[str]:
    """The inputs a catalog workflow uses: ``topic``, then every other placeholder."""
    wf = load_workflow(name, catalog)
    names = {n for u in unfilled_placeholders(wf, []) for n in u.names}
    return ["topic", *sorted(names - {"topic"})]


def check_backend(value: str | None, settings: Settings) -> str:
    backend = (value or settings.execution_backend).strip()
    if backend not in BACKEND_NAMES:
        raise ActionError(f"backend {backend!r}: expected one of {', '.join(BACKEND_NAMES)}")
    if backend == "nats" and not settings.nats_url:
        raise ActionError(
            "backend nats needs a NATS stack: start the console with `agentic up` (which "
            "serves it) or set AGENTIC_NATS_URL"
        )
    return backend


def check_start(form: Mapping[str, str], settings: Settings, catalog: Catalog) -> StartRequest:
    """A start form, checked as ``agentic run`` checks its arguments.

    Raises:
        ActionError: a workflow the catalog does not name, a bad input or backend, an
            empty or too long goal, an unsafe session name.
    """
    backend = check_backend(form.get("backend"), settings)
    goal = (form.get("goal") or "").strip()
    workflow = (form.get("workflow") or "").strip()
    if bool(goal) == bool(workflow):
        raise ActionError("choose a workflow or type a goal (one of them)")
    run_id = new_run_id()
    if goal:
        if len(goal) > MAX_GOAL_CHARS:
            raise ActionError(f"goal: at most {MAX_GOAL_CHARS} characters")
        session = (form.get("session") or "").strip() or f"console-{secrets.token_hex(4)}"
        if not is_safe_id(session):
            raise ActionError(
                f"session {session[:40]!r}: letters, digits, '_', '.', '-' (at most 128)"
            )
        return StartRequest(run_id, backend, goal=goal, session=session)
    if workflow not in catalog.workflows:
        known = ", ".join(sorted(catalog.workflows)) or "none"
        raise ActionError(f"workflow {workflow[:60]!r} is not in the catalog (known: {known})")
    inputs = _inputs(form, workflow_inputs(catalog, workflow))
    request = build_request(workflow, catalog, inputs=inputs, backend=backend, run_id=run_id)
    try:
        prepare_run(request, settings=settings, catalog=catalog)  # writes nothing
    except ConfigError as exc:
        raise ActionError(str(exc)) from exc
    return StartRequest(run_id, backend, workflow=workflow, inputs=inputs)


def _inputs(form: Mapping[str, str], wanted: list[str]) -> dict[str, str]:
    """``input.<name>`` fields of the form, for the inputs the workflow uses (empty ones
    left out: the workflow's topic is the default)."""
    values = {}
    for key, value in form.items():
        if not key.startswith("input."):
            continue
        name = key.removeprefix("input.")
        if not INPUT_NAME.fullmatch(name) or name not in wanted:
            raise ActionError(f"input {name[:40]!r}: the workflow uses {', '.join(wanted)}")
        if len(value) > MAX_INPUT_CHARS:
            raise ActionError(f"input {name}: at most {MAX_INPUT_CHARS} characters")
        if value.strip():
            values[name] = value.strip()
    return values


@dataclass(frozen=True)
class ReplayRequest:
    source: str
    new_id: str
    from_step: str
    backend: str
    sets: list[str]


def check_replay(
    form: Mapping[str, str], source: str, store: RunStore, settings: Settings
) -> ReplayRequest:
    """A replay form, checked by :func:`agentic.replay.prepare_replay` (which writes
    nothing) exactly as ``agentic replay`` checks its arguments."""
    from agentic.replay import prepare_replay

    lines = [x.strip() for x in (form.get("sets") or "").splitlines() if x.strip()]
    if len(lines) > MAX_SETS or any(len(x) > MAX_SET_CHARS for x in lines):
        raise ActionError(f"at most {MAX_SETS} --set items of {MAX_SET_CHARS} characters")
    step = (form.get("from_step") or "").strip() or None
    record = store.read_run(source)
    backend = check_backend(form.get("backend") or record.backend, settings)
    new_id = new_run_id()
    try:
        prepared = prepare_replay(
            store,
            source,
            settings=settings,
            from_step=step,
            backend=backend,
            sets=lines,
            new_id=new_id,
        )
    except ConfigError as exc:
        raise ActionError(str(exc)) from exc
    return ReplayRequest(source, new_id, prepared.from_step, backend, lines)


def cancel(store: RunStore, record: RunRecord, settings: Settings) -> str:
    """Ask for ``record``'s run to be cancelled, as ``agentic cancel`` does; what happened.

    Raises:
        ActionError: a ``nats`` run without a NATS URL, or the coordinator refused.
    """
    if record.is_terminal:
        return f"run {record.run_id} already {record.status}"
    if record.backend != "nats":
        from agentic.recording.cancel import cancel_document

        store.request_cancel(record.run_id, cancel_document("cancelled from agentic console"))
        return f"cancel requested for run {record.run_id}"
    if not settings.nats_url:
        raise ActionError("this is a nats run: the console needs AGENTIC_NATS_URL to cancel it")
    from agentic.backends.nats import request_cancel
    from agentic.errors import BusError

    try:
        reply = request_cancel(settings, record.run_id)
    except BusError as exc:
        raise ActionError(f"the coordinator could not be asked: {exc}") from exc
    if not reply.ok:
        raise ActionError(f"run {record.run_id!r} was not cancelled: {reply.error}")
    return f"run {record.run_id}: {reply.body.get('status') or 'cancel requested'}"
