"""`agentic execute-step SPEC_URL`: one attempt from its spec, recorded in the run store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentic.cli import _register, app
from agentic.contracts import (
    AgentProvider,
    ScriptedFailure,
    ScriptedScript,
    TaskConfig,
    WorkflowConfig,
)
from agentic.materialize import materialize
from agentic.settings import Settings
from agentic.store import RunStore, open_store

pytestmark = pytest.mark.procs

_register()
runner = CliRunner()


def write_spec(store: RunStore, fail: ScriptedFailure | None = None) -> str:
    """A one-step run's spec in ``store``; returns its URL."""
    agent = AgentProvider(
        id="greeter",
        type="scripted",
        role="Greeter",
        goal="Greet",
        backstory="Greets.",
        script=ScriptedScript(replies=["hello {topic}"], fail=fail),
    )
    task = TaskConfig(
        id="greet", agent_provider_id="greeter", description="Greet {topic}.", expected_output="x"
    )
    wf = WorkflowConfig(
        name="hi", topic="world", agent_providers=[agent], tasks=[task], task_sequence=["greet"]
    )
    (spec,) = materialize(wf, run_id="r1", inputs={}, store_url=store.url, settings=Settings())
    return store.write_spec(spec)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return open_store(str(tmp_path / "store"))


def test_a_step_that_succeeds_commits_its_result_prints_nothing_and_exits_0(
    store: RunStore,
) -> None:
    outcome = runner.invoke(app, ["execute-step", write_spec(store)])
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stdout == ""
    committed = store.read_result("r1", "greet")
    assert committed is not None and committed.output == "hello world"
    assert [a.attempt for a in store.read_attempts("r1", "greet")] == [1]


def test_a_fatal_failure_is_committed_and_exits_1(store: RunStore) -> None:
    url = write_spec(store, ScriptedFailure(times=1, mode="fatal", message="refused"))
    outcome = runner.invoke(app, ["execute-step", url])
    assert outcome.exit_code == 1
    committed = store.read_result("r1", "greet")
    assert committed is not None and committed.status == "failed"
    assert committed.error is not None and "refused" in committed.error.message


def test_a_retryable_failure_is_recorded_as_an_attempt_but_not_committed(store: RunStore) -> None:
    url = write_spec(store, ScriptedFailure(times=1, mode="error"))
    outcome = runner.invoke(app, ["execute-step", url])
    assert outcome.exit_code == 1
    (attempt,) = store.read_attempts("r1", "greet")
    assert attempt.error is not None and attempt.error.retryable
    # The coordinator may still retry: a later attempt must be able to commit.
    assert store.read_result("r1", "greet") is None


def test_an_existing_commit_is_never_overwritten(store: RunStore) -> None:
    url = write_spec(store)
    assert runner.invoke(app, ["execute-step", url]).exit_code == 0
    first = store.read_result("r1", "greet")
    assert runner.invoke(app, ["execute-step", url]).exit_code == 0
    assert store.read_result("r1", "greet") == first


def test_a_spec_that_cannot_be_read_exits_2_naming_the_url(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere" / "spec.json")
    outcome = runner.invoke(app, ["execute-step", missing])
    assert outcome.exit_code == 2
    assert f"cannot read step spec {missing!r}" in outcome.stderr

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"run_id": "r1"}))
    outcome = runner.invoke(app, ["execute-step", str(bad)])
    assert outcome.exit_code == 2 and str(bad) in outcome.stderr


def test_a_step_process_imports_neither_the_catalog_nor_nats_nor_kubernetes(
    store: RunStore,
) -> None:
    url = write_spec(store)
    probe = (
        "import sys\n"
        "from agentic.cli import main\n"
        f"sys.argv = ['agentic', 'execute-step', {url!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    code = exit.code\n"
        "heavy = ('agentic.catalog', 'agentic.bus', 'agentic.k8s', 'nats', 'kubernetes')\n"
        "loaded = sorted(m for m in sys.modules if any(\n"
        "    m == h or m.startswith(h + '.') for h in heavy))\n"
        "print(code, loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == "0 []", done.stderr[-2000:]
