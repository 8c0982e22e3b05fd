"""Executing a prepared run to its end, or handing it to a backend that runs it without us.

:func:`run_to_completion` creates the run in the store, executes it on its backend and
returns it finished (a goal is planned first, an ``--iterative`` goal round by round);
:func:`submit_detached` hands it to a backend with workers of its own (``nats``) and returns.
Preparing a run (:mod:`agentic.preparation`) writes nothing; this module is where the run
begins to exist.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from agentic import redact, tracing
from agentic.backends import EventCallback, get_backend
from agentic.catalog import Catalog, catalog_dirs, load_catalog
from agentic.contracts import RunRecord, RunRequest, WorkflowConfig, ended_record, utcnow
from agentic.errors import ConfigError, PlanError
from agentic.logs import log_context
from agentic.preparation import (
    GoalPlanner,
    check_same_run,
    is_iterative,
    prepare_run,
    with_run_id,
)
from agentic.recording.cancel import CANCELLED_BY_USER, mark_cancelled
from agentic.settings import Settings
from agentic.store import open_run_store

if TYPE_CHECKING:
    from opentelemetry.trace import Span

    from agentic.store import RunStore

log = logging.getLogger(__name__)


@runtime_checkable
class DetachableBackend(Protocol):
    """A backend that can start a run and leave it running without this process (``nats``).

    ``agentic run --detach`` uses :meth:`submit`; backends that execute inside the calling
    process (``inprocess``, ``subprocess``) do not have it.
    """

    def submit(self, record: RunRecord, store: RunStore, settings: Settings) -> None:
        """Hand ``record`` (already created in ``store``) to the backend and return."""
        ...


def run_to_completion(
    request: RunRequest,
    settings: Settings,
    on_event: EventCallback,
    *,
    catalog: Catalog | None = None,
    store: RunStore | None = None,
    planner: GoalPlanner | None = None,
    on_start: Callable[[RunRecord], None] | None = None,
) -> RunRecord:
    """Create the run in the store, execute it on its backend and return it finished.

    Submitting a ``run_id`` that already exists starts nothing: the existing run's record
    is returned as it is (finished or not). A goal whose planning fails is recorded as a
    failed run (the planner's raw output in ``run.json`` ``plan``) and returned; an
    ``iterative`` goal is run by :func:`agentic.planning.run_iterative`. Ctrl-C
    (``KeyboardInterrupt``) while the backend runs marks the run ``cancelled`` (unless the
    backend already finished it) and returns its record instead of raising.

    Args:
        request: What to run.
        settings: Backend, store and retry settings.
        on_event: Receives every run event, in order.
        catalog: The catalog (default: loaded from ``settings``).
        store: The run store (default: ``settings.run_store_url``).
        planner: Plans ``goal`` requests.
        on_start: Called with the new record before the backend starts (live progress
            uses it to show every step as pending).

    Raises:
        ConfigError: the request is invalid; nothing was written.
    """
    store = store if store is not None else open_run_store(settings)
    if request.run_id is not None and store.run_exists(request.run_id):
        existing = store.read_run(request.run_id)
        check_same_run(existing, request)
        return existing
    catalog = catalog if catalog is not None else load_catalog(catalog_dirs(settings))
    if request.goal is not None:
        request = with_run_id(request)
    if is_iterative(request):
        from agentic.planning import run_iterative

        return run_iterative(
            request, settings, on_event, catalog=catalog, store=store, on_start=on_start
        )
    try:
        record = prepare_run(request, settings=settings, catalog=catalog, planner=planner)
    except PlanError as exc:  # a goal that cannot be planned is a failed run, kept to inspect
        from agentic.planning import failed_plan_record

        return failed_plan_record(store, request, settings, exc)
    backend = get_backend(record.backend)
    protect_workflow(record.workflow)
    with traced_run(record) as (record, span):  # the run's trace: submit to end
        if not store.create_run(record):
            return store.read_run(record.run_id)  # a concurrent submit of the same id won
        if on_start is not None:
            on_start(record)
        try:
            with log_context(run_id=record.run_id):  # what the backend logs names the run
                finished = backend.run(record, store, settings, on_event)
        except KeyboardInterrupt:
            finished = mark_cancelled(store, record.run_id, CANCELLED_BY_USER)
        except Exception as exc:  # it could not start (no cluster, no server): not left pending
            reason = f"the run could not start on {record.backend}: {exc}"
            mark_failed(store, record.run_id, reason)
            raise
        run_ended(span, finished)
    if finished.request.planner is not None:
        from agentic.planning import record_outcome

        record_outcome(store, finished)  # the goal's session gets its final answer
    index_finished(finished, store, settings)
    return finished


def mark_failed(store: RunStore, run_id: str, reason: str) -> None:
    """Record ``run_id`` failed with ``reason`` unless it ended already (best effort: the
    error that stopped it is what the caller reports)."""
    try:
        record = store.read_run(run_id)
        if not record.is_terminal:
            store.write_run(ended_record(record, "failed", at=utcnow(), error=reason))
    except Exception as exc:
        log.warning("run %s could not be recorded failed: %s", run_id, exc)


def index_finished(record: RunRecord, store: RunStore, settings: Settings) -> None:
    """Put a run that just ended into the knowledge index (:mod:`agentic.knowledge`): the
    next plan can learn from it at once. Best effort: the index catches up on its next
    refresh anyway."""
    if not record.is_terminal:
        return
    try:
        from agentic.knowledge import KnowledgeIndex, index_path

        with KnowledgeIndex(index_path(settings, store)) as index:
            index.add_run(store, record)
    except Exception as exc:
        log.warning("run %s is not in the knowledge index yet: %s", record.run_id, exc)


def submit_detached(
    request: RunRequest,
    settings: Settings,
    *,
    catalog: Catalog | None = None,
    store: RunStore | None = None,
    planner: GoalPlanner | None = None,
) -> RunRecord:
    """Create the run and hand it to a :class:`DetachableBackend` without waiting.

    Raises:
        ConfigError: the request is invalid, or its backend runs inside this process
            (only a backend with workers of its own, ``nats``, can run detached).
    """
    store = store if store is not None else open_run_store(settings)
    if request.run_id is not None and store.run_exists(request.run_id):
        existing = store.read_run(request.run_id)
        check_same_run(existing, request)
        return existing
    if is_iterative(request):
        raise ConfigError("an --iterative goal is planned while it runs: it cannot be detached")
    catalog = catalog if catalog is not None else load_catalog(catalog_dirs(settings))
    if request.goal is not None:
        request = with_run_id(request)
    try:
        record = prepare_run(request, settings=settings, catalog=catalog, planner=planner)
    except PlanError as exc:
        from agentic.planning import failed_plan_record

        return failed_plan_record(store, request, settings, exc)
    backend = get_backend(record.backend)
    if not isinstance(backend, DetachableBackend):
        raise ConfigError(
            f"--detach needs a backend that keeps running without this process "
            f"(--backend nats); {record.backend!r} runs the workflow inside it"
        )
    with traced_run(record) as (record, _span):  # a detached run's root span: its submit
        if store.create_run(record):
            backend.submit(record, store, settings)
    return store.read_run(record.run_id)


@contextlib.contextmanager
def traced_run(record: RunRecord) -> Iterator[tuple[RunRecord, Span | None]]:
    """The root span of a run (``run <workflow>``) around the block, child of the caller's
    ``TRACEPARENT`` if it has one; yields the record naming the run's trace, and the span
    (None when nothing is exported: docs/observability.md, "Traces")."""
    attributes = {
        "agentic.run_id": record.run_id,
        "agentic.workflow": record.workflow_name,
        "agentic.backend": record.backend,
    }
    parent = tracing.current() or tracing.from_env()
    name = f"run {record.workflow_name}"
    with tracing.span(name, parent=parent, attributes=attributes) as span:
        trace = tracing.current()
        traced = record.model_copy(update={"traceparent": str(trace) if trace else None})
        yield traced, span


def run_ended(span: Span | None, record: RunRecord) -> None:
    """Put how the run ended on its root span."""
    if span is None:
        return
    span.set_attribute("agentic.status", record.status)
    if record.status != "succeeded":
        tracing.failed(span, f"run {record.status}", record.error)


def protect_workflow(workflow: WorkflowConfig | None) -> None:
    """Mask, in everything this process writes and prints, the values of the variables the
    workflow's providers name (:mod:`agentic.redact`): its steps may run right here."""
    if workflow is None:
        return
    entries = [*workflow.agent_providers, *workflow.mcp_providers]
    redact.protect_entries(e.model_dump(mode="json", exclude_none=True) for e in entries)
