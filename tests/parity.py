"""The parity bar every backend must pass: same workflow and inputs, same steps, same outputs.

:func:`run_and_collect` runs a workflow on one backend and returns the committed output of
every step; :func:`stored_layout` reads what the run left in the store through the DESIGN §6
layout (not through the store's own API, so a store bug cannot hide itself). A backend's
parity test compares both with another backend's::

    outputs = run_and_collect("kubernetes", wf, inputs, store_url)
    assert outputs == run_and_collect("inprocess", wf, inputs, other_store_url)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import fsspec

from agentic import names
from agentic.backends import Backend, get_backend
from agentic.contracts import (
    BACKEND_NAMES,
    RunEvent,
    RunRecord,
    RunRequest,
    StepResult,
    WorkflowConfig,
)
from agentic.ids import new_run_id
from agentic.recording.attempts import commit_reused
from agentic.settings import Settings
from agentic.store import open_store


@dataclass
class Collected:
    """One finished run: its record, events, and each step's committed output."""

    record: RunRecord
    outputs: dict[str, str]
    events: list[RunEvent] = field(default_factory=list)


def run_workflow(
    backend: str | Backend,
    workflow: WorkflowConfig,
    inputs: Mapping[str, str],
    store_url: str,
    *,
    settings: Settings | None = None,
    run_id: str | None = None,
    reused: Mapping[str, StepResult] | None = None,
) -> Collected:
    """Create a run of ``workflow`` in ``store_url``, run it on ``backend``, collect it.

    ``reused`` results (of an earlier run, by step id) are committed to the new run first and
    handed to the backend, as a replay does (:func:`agentic.replay.execute_reusing`).
    """
    runner = get_backend(backend) if isinstance(backend, str) else backend
    store = open_store(store_url)
    record = RunRecord(
        run_id=run_id or new_run_id("parity"),
        request=RunRequest(workflow=workflow, inputs=dict(inputs)),
        workflow=workflow,
        inputs=dict(inputs),
        # A backend built for tests (threads) runs in this process: recorded as inprocess.
        backend=runner.name if runner.name in BACKEND_NAMES else "inprocess",
    )
    assert store.create_run(record)
    events: list[RunEvent] = []
    if reused:
        commit_reused(store, record.run_id, reused)
    final = runner.run(record, store, settings or Settings(), events.append, reused=reused)
    outputs = {}
    for step_id in workflow.task_sequence:
        result = store.read_result(record.run_id, step_id)
        if result is not None and result.status == "succeeded":
            outputs[step_id] = result.output
    return Collected(final, outputs, events)


def run_and_collect(
    backend: str | Backend,
    workflow: WorkflowConfig,
    inputs: Mapping[str, str],
    store_url: str,
    **options: object,
) -> dict[str, str]:
    """The committed output of every step of a run that must succeed, by step id."""
    collected = run_workflow(backend, workflow, inputs, store_url, **options)  # type: ignore[arg-type]
    assert collected.record.status == "succeeded", collected.record.error
    return collected.outputs


def stored_layout(store_url: str, run_id: str) -> dict[str, list[str]]:
    """Per step directory of the run, the files it holds (``spec.json``, ``attempts/1.json``...)."""
    fs, root = fsspec.core.url_to_fs(store_url)
    steps_dir = f"{root.rstrip('/')}/{names.run_dir(run_id)}/steps"
    layout: dict[str, list[str]] = {}
    for path in sorted(fs.find(steps_dir)):
        relative = path[len(steps_dir) :].strip("/")
        step_id, _, rest = relative.partition("/")
        layout.setdefault(step_id, []).append(rest)
    return layout
