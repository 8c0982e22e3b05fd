"""The backend conformance suite: one set of scenarios, run against every backend.

Whatever runs the steps (this process, threads, a process per step, a Job per step on the
API server double, NATS workers), a backend owes its callers the same things, and these tests
read them only through the contracts: the finished run record, the events handed to
``on_event``, and the DESIGN §6 store layout read with fsspec (:mod:`tests.parity`).

* a two-step run succeeds with the scripted replies, one spec, attempt and result per step,
  and events whose fold is the run record;
* a step that fails for good fails the run, and the step after it never runs;
* a step whose result is reused (a replay) is never executed, and the next step sees the
  reused output;
* a step's Python tool and registered guardrail are resolved by id from the catalog of the
  process that runs it (issue 14), and a structured-output task stores the same JSON.

A new backend joins by adding a :class:`Target` to :data:`TARGETS`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentic.backends import Backend, get_backend
from agentic.backends.local.launched import LauncherBackend
from agentic.backends.local.threads import ThreadLauncher
from agentic.catalog import load_catalog, load_workflow
from agentic.cli import _register, app
from agentic.contracts import ScriptedFailure, StepResult
from agentic.contracts.fold import RunView, fold
from agentic.runtime.step import with_outputs_read
from agentic.settings import Settings
from agentic.store import open_store
from tests.factories import scripted_agent, step_result, two_steps
from tests.fixtures import structured_output
from tests.fixtures.crewai_project import write_project
from tests.parity import Collected, run_workflow, stored_layout

pytestmark = pytest.mark.filterwarnings("ignore::ImportWarning")  # CrewAI's package layout

_register()
runner = CliRunner()

PYTHON_TOOLS = Path(__file__).resolve().parents[1] / "fixtures" / "python_tools"
RETRY_FAST = {"retry_backoff_base_s": 0.05, "retry_backoff_max_s": 0.1, "retry_jitter": 0.0}
EXECUTED = ["attempts/1.json", "result.json", "spec.json"]
"""What a step that ran once leaves in its directory (DESIGN §6)."""


@dataclass
class Target:
    """A backend under test and the store and settings its steps can reach."""

    backend: Backend
    store_url: str
    settings: Settings

    def run(self, workflow: Any, **options: Any) -> Collected:
        return run_workflow(
            self.backend, workflow, {}, self.store_url, settings=self.settings, **options
        )


def _local(name: str) -> Callable[[pytest.FixtureRequest, Path], Iterator[Target]]:
    def make(request: pytest.FixtureRequest, root: Path) -> Iterator[Target]:
        settings = Settings(run_store_url=str(root / "store"), **RETRY_FAST)
        if name == "threads":
            backend: Backend = LauncherBackend(
                "threads", lambda store, _settings: ThreadLauncher(store), max_parallel=lambda s: 4
            )
        else:
            backend = get_backend(name)
        yield Target(backend, settings.run_store_url, settings)

    return make


def _kubernetes(request: pytest.FixtureRequest, root: Path) -> Iterator[Target]:
    from tests.e2e.k8s_cluster import PVC, cluster_settings
    from tests.k8s_double import KubeDouble

    store_dir = root / "store"
    store_dir.mkdir()
    with KubeDouble(workdir=root / "k8s-double", kill_grace_s=1.0) as double:
        double.add_pvc(PVC, store_dir)
        client = double.api_client()
        try:
            backend = get_backend("kubernetes", api_client=client)
            yield Target(backend, str(store_dir), cluster_settings(store_dir))
        finally:
            client.close()


def _nats(request: pytest.FixtureRequest, root: Path) -> Iterator[Target]:
    import os

    from agentic.backends.nats import NatsBackend
    from agentic.cli.process_stack import ProcessStack

    store_url = str(root / "store")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env.update(
        AGENTIC_RUN_STORE_URL=store_url,
        AGENTIC_RETRY_BACKOFF_BASE_S="0.05",
        AGENTIC_ALLOW_INLINE_PROVIDERS="true",  # the scenarios' agents travel with the runs
        CREWAI_DISABLE_TELEMETRY="true",
    )
    stack = ProcessStack(Settings(), workers=1, port=0, data_dir=root / "js", env=env)
    stack.start()
    try:
        settings = Settings(nats_url=stack.url, run_store_url=store_url, **RETRY_FAST)
        yield Target(NatsBackend(), store_url, settings)
    finally:
        stack.stop()


TARGETS = {
    "inprocess": _local("inprocess"),
    "threads": _local("threads"),
    "subprocess": _local("subprocess"),
    "kubernetes": _kubernetes,
    "nats": _nats,
}
MARKS = {
    "subprocess": [pytest.mark.procs],
    "kubernetes": [pytest.mark.procs, pytest.mark.k8s],
    "nats": [pytest.mark.procs, pytest.mark.nats],
}


@pytest.fixture(
    scope="module",
    params=[pytest.param(name, marks=MARKS.get(name, [])) for name in TARGETS],
)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """Each backend once per module: its server, double or stack serves every scenario."""
    yield from TARGETS[request.param](request, tmp_path_factory.mktemp(request.param))


def check_events(run: Collected) -> None:
    """The events are numbered from 0 without a gap, end with the run's end, and fold into
    the record the backend returned."""
    events = run.events
    assert [e.seq for e in events] == list(range(len(events)))
    assert events[-1].type == run.record.status  # succeeded, failed or cancelled
    view = fold(events, RunView(run.record.run_id).with_steps(run.record.workflow.task_sequence))
    assert view.status == run.record.status
    recorded = {s.step_id: s.status for s in run.record.steps}
    assert {step_id: step.status for step_id, step in view.steps.items()} == recorded


def step_events(run: Collected, step_id: str) -> list[str]:
    """The types of the step events of ``step_id`` (the run's end may name a step too)."""
    return [e.type for e in run.events if e.step_id == step_id and e.type.startswith("step_")]


def test_a_two_step_run_succeeds_with_one_attempt_per_step(target: Target) -> None:
    run = target.run(two_steps(topic="conformance"))

    assert run.record.status == "succeeded", run.record.error
    assert run.outputs == {
        "research": "research says hello to conformance",
        "write": "write says hello to conformance",
    }
    assert run.record.output == "write says hello to conformance"
    assert [(s.step_id, s.status, s.attempt) for s in run.record.steps] == [
        ("research", "succeeded", 1),
        ("write", "succeeded", 1),
    ]
    assert stored_layout(target.store_url, run.record.run_id) == {
        "research": EXECUTED,
        "write": EXECUTED,
    }
    store = open_store(target.store_url)
    spec = store.read_spec(run.record.run_id, "write")
    assert spec.prior_all_earlier  # by reference: what the step read is the store's
    assert with_outputs_read(spec, store).prior_outputs == {
        "research": "research says hello to conformance"
    }
    check_events(run)
    for step_id in ("research", "write"):
        assert step_events(run, step_id) == ["step_ready", "step_started", "step_succeeded"]
    # write was dispatched only once research had succeeded
    types = [(e.type, e.step_id) for e in run.events]
    assert types.index(("step_succeeded", "research")) < types.index(("step_ready", "write"))


def test_a_step_that_fails_for_good_fails_the_run_and_the_next_step_never_runs(
    target: Target,
) -> None:
    agent = scripted_agent(fail=ScriptedFailure(times=1, mode="fatal", message="no way"))
    workflow = two_steps(agent, topic="failure")

    run = target.run(workflow)

    assert run.record.status == "failed"
    assert "research" in (run.record.error or "") and "no way" in (run.record.error or "")
    assert [(s.step_id, s.status) for s in run.record.steps] == [
        ("research", "failed"),
        ("write", "skipped"),
    ]
    result = open_store(target.store_url).read_result(run.record.run_id, "research")
    assert result is not None and result.status == "failed" and result.attempt == 1
    assert result.error is not None and not result.error.retryable
    assert stored_layout(target.store_url, run.record.run_id) == {"research": EXECUTED}
    check_events(run)
    assert step_events(run, "research")[-1] == "step_failed"
    assert step_events(run, "write") == []


def test_a_reused_result_is_not_executed_and_the_next_step_reads_it(target: Target) -> None:
    earlier = step_result("earlier-run", "research", output="notes paid for earlier")
    reused: dict[str, StepResult] = {"research": earlier}

    run = target.run(two_steps(topic="replays"), reused=reused)

    assert run.record.status == "succeeded", run.record.error
    assert run.outputs == {
        "research": "notes paid for earlier",
        "write": "write says hello to replays",
    }
    store = open_store(target.store_url)
    result = store.read_result(run.record.run_id, "research")
    assert result is not None and result.reused_from == "earlier-run"
    spec = store.read_spec(run.record.run_id, "write")
    assert spec.prior_all_earlier
    assert with_outputs_read(spec, store).prior_outputs == {"research": "notes paid for earlier"}
    # research has its result and nothing else: no spec, no attempt, no event of a run
    assert stored_layout(target.store_url, run.record.run_id) == {
        "research": ["result.json"],
        "write": EXECUTED,
    }
    assert "step_started" not in step_events(run, "research")
    assert step_events(run, "write") == ["step_ready", "step_started", "step_succeeded"]
    check_events(run)


def test_a_python_tool_and_a_registered_guardrail_run_where_the_step_runs(target: Target) -> None:
    # The workflow names the tool and the guardrail by id; every process that runs steps
    # imports them from its own catalog (the repository's config/, as the worker image
    # bakes it), never from the run.
    catalog = load_catalog([PYTHON_TOOLS], env={})
    workflow = load_workflow("count_words", catalog, check_env=False)
    assert workflow.task("count").tools is None and workflow.tools == ["word_count"]

    run = target.run(workflow)

    assert run.record.status == "succeeded", run.record.error
    # The tool counted the words; the guardrail refused the first answer (no period) and
    # CrewAI's re-run, inside the one attempt, ended with one.
    assert run.outputs == {"count": "The text has 5 words."}
    result = open_store(target.store_url).read_result(run.record.run_id, "count")
    assert result is not None and result.attempt == 1
    check_events(run)


def test_a_structured_output_task_stores_the_same_json(target: Target) -> None:
    catalog = load_catalog([structured_output.CATALOG], env={})
    workflow = load_workflow(structured_output.WORKFLOW, catalog, check_env=False)

    run = target.run(workflow)

    assert run.record.status == "succeeded", run.record.error
    assert run.outputs == structured_output.OUTPUTS
    store = open_store(target.store_url)
    brief = store.read_result(run.record.run_id, "brief")
    assert brief is not None and brief.output_json == structured_output.BRIEF
    assert brief.attempt == 1  # the schema's feedback fixed the answer inside the attempt
    verdict = store.read_result(run.record.run_id, "verdict")
    assert verdict is not None and verdict.output_json == structured_output.VERDICT


def test_an_imported_crewai_project_runs_as_it_does_in_process(
    target: Target, tmp_path: Path
) -> None:
    if target.backend.name not in ("inprocess", "nats"):
        pytest.skip("issue 14 asks it of inprocess and nats; the others run nats's step runtime")
    project, out = tmp_path / "project", tmp_path / "cat"
    write_project(project)
    command = ["import", "crewai", str(project), "--out", str(out), "--offline"]
    imported = runner.invoke(app, command)
    assert imported.exit_code == 0, imported.output
    workflow = load_workflow("latest_ai", load_catalog([out], env={}))
    inputs = {"topic": "AI agents", "current_year": "2026"}

    run = run_workflow(target.backend, workflow, inputs, target.store_url, settings=target.settings)
    reference = run_workflow("inprocess", workflow, inputs, str(tmp_path / "reference"))

    assert run.record.status == reference.record.status == "succeeded", run.record.error
    assert run.outputs == reference.outputs
    assert run.outputs["reporting_task"] == (
        "reporting_task: an offline placeholder answer from the reporting_analyst agent."
    )
    # The same prompts (context passing, filled placeholders): the same tokens, step by step.
    store, ref_store = open_store(target.store_url), open_store(str(tmp_path / "reference"))
    for step_id in workflow.task_sequence:
        ran = store.read_result(run.record.run_id, step_id)
        ref = ref_store.read_result(reference.record.run_id, step_id)
        assert ran is not None and ref is not None
        assert ran.usage.prompt_tokens == ref.usage.prompt_tokens > 0, step_id
        assert ran.usage.completion_tokens == ref.usage.completion_tokens, step_id
