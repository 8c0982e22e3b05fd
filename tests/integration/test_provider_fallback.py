"""Fallback chains: a step whose provider fails moves to the next provider of its chain.

The offline ``scripted`` provider's ``unavailable`` mode fails as a rate-limited or down
server does, on every local backend; two real HTTP servers (one answering 503, one
answering) show the same through CrewAI's own OpenAI client and ``agentic show``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentic.cli import _register, app
from agentic.contracts import ScriptedFailure, TaskConfig, WorkflowConfig
from agentic.settings import Settings
from agentic.store import open_store
from tests.factories import scripted_agent
from tests.integration.test_cancel_local import cli_env
from tests.integration.test_provider_http import (
    ModelServer,
    hang,
    provider,
    server,
    serving,
    status,
)
from tests.parity import run_workflow

__all__ = ["server"]  # the fixture, used below by name

_register()
runner = CliRunner()

FAST_RETRY = Settings(retry_backoff_base_s=0.05, retry_backoff_max_s=0.1, retry_jitter=0.0)


def chained_workflow(retries: int = 0) -> WorkflowConfig:
    down = scripted_agent(
        "primary",
        fail=ScriptedFailure(times=9, mode="unavailable", message="503 overloaded"),
    ).model_copy(update={"fallback": ["backup"]})
    backup = scripted_agent("backup", replies=["the backup answered {step_id}"])
    tasks = [
        TaskConfig(id=step, agent_provider_id="primary", description=f"Do {step}.",
                   expected_output="text", retries=retries)
        for step in ("first", "second")
    ]  # fmt: skip
    return WorkflowConfig(
        name="chained",
        agent_providers=[down, backup],
        tasks=tasks,
        task_sequence=["first", "second"],
    )


@pytest.mark.parametrize("backend", ["inprocess", "subprocess"])
def test_a_step_whose_provider_is_down_succeeds_on_its_fallback(
    tmp_path: Path, backend: str
) -> None:
    url = str(tmp_path / "store")
    run = run_workflow(backend, chained_workflow(retries=0), {}, url, settings=FAST_RETRY)

    assert run.record.status == "succeeded", run.record.error
    assert run.record.output == "the backup answered second"
    store = open_store(url)
    for step in ("first", "second"):
        attempts = store.read_attempts(run.record.run_id, step)
        assert [(a.attempt, a.status, a.provider) for a in attempts] == [
            (1, "failed", "primary"),
            (2, "succeeded", "backup"),
        ]
        failure = attempts[0].error
        assert (
            failure is not None and failure.provider_failed and "503 overloaded" in failure.message
        )
        spec = store.read_spec(run.record.run_id, step)
        assert spec.attempt == 2 and spec.agent_provider["id"] == "backup"
    ready = [e.data for e in run.events if e.type == "step_ready" and e.step_id == "first"]
    assert ready == [
        {"prior_steps": []},
        {"prior_steps": [], "provider": "backup", "fallback": True},
    ]


def test_when_the_whole_chain_is_down_the_run_fails_after_one_attempt_per_provider(
    tmp_path: Path,
) -> None:
    wf = chained_workflow(retries=0)
    backup = wf.provider("backup").model_copy(update={"script": wf.provider("primary").script})
    wf = wf.model_copy(update={"agent_providers": [wf.provider("primary"), backup]})
    run = run_workflow("inprocess", wf, {}, str(tmp_path / "store"), settings=FAST_RETRY)

    assert run.record.status == "failed"
    assert "step 'first' failed after 2 attempts (retries exhausted)" in (run.record.error or "")


# --- two real HTTP servers and the CLI ------------------------------------------------------

FALLBACK_WORKFLOW = """\
workflow:
  name: resilient
  topic: fallbacks
  agent_providers: [remote]
  tasks:
    - {id: ask, agent_provider_id: remote, description: Ask., expected_output: An answer.,
       retries: 0}
"""


@pytest.fixture
def second_server() -> Iterator[ModelServer]:
    """Another server like ``server``, answering every request."""
    with serving() as state:
        yield state


def test_agentic_show_names_the_provider_of_each_attempt_after_a_fallback(
    server: ModelServer,
    second_server: ModelServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.reply = status(503)
    config = tmp_path / "config"
    (config / "agent_providers").mkdir(parents=True)
    (config / "workflows").mkdir()
    remote = provider(openai_base_url=f"{server.url}/v1", max_retries=1, fallback=["spare"])
    spare = provider(id="spare", openai_base_url=f"{second_server.url}/v1", max_retries=0)
    (config / "agent_providers" / "remote.yaml").write_text(json.dumps(remote))
    (config / "agent_providers" / "spare.yaml").write_text(json.dumps(spare))
    (config / "workflows" / "resilient.yaml").write_text(FALLBACK_WORKFLOW)
    for name, value in {**cli_env(str(tmp_path / "store"), config), "TEST_MODEL_KEY": "sk-t",
                        "AGENTIC_EXECUTION_BACKEND": "inprocess"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)

    ran = runner.invoke(app, ["run", "resilient", "--run-id", "fell-back"])
    assert ran.exit_code == 0, ran.output
    assert "hello from the server" in ran.output
    # The first provider's client tried twice (max_retries: 1), the spare answered once.
    assert len(server.seen) == 2 and len(second_server.seen) == 1

    shown = runner.invoke(app, ["show", "fell-back", "--json"])
    assert shown.exit_code == 0, shown.output
    (step,) = json.loads(shown.output)["steps"]
    assert [(a["attempt"], a["status"], a["provider"]) for a in step["attempts"]] == [
        (1, "failed", "remote"),
        (2, "succeeded", "spare"),
    ]
    assert step["attempts"][0]["error"]["provider_failed"] is True
    table = runner.invoke(app, ["show", "fell-back"], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "remote" in table.output and "spare" in table.output


# --- a failing server fails the step on every local backend ---------------------------------


def remote_workflow(entry: dict[str, object]) -> WorkflowConfig:
    from agentic.contracts import AgentProvider

    task = TaskConfig(
        id="ask", agent_provider_id=str(entry["id"]), description="Ask.",
        expected_output="An answer.", retries=0,
    )  # fmt: skip
    return WorkflowConfig(
        name="remote",
        agent_providers=[AgentProvider.model_validate(entry)],
        tasks=[task],
        task_sequence=["ask"],
    )


@pytest.mark.parametrize("backend", ["inprocess", "subprocess"])
@pytest.mark.parametrize("failure", ["500", "hang"])
def test_a_failing_server_fails_the_step_after_its_request_timeout_on_every_backend(
    server: ModelServer,
    tmp_path: Path,
    backend: str,
    failure: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.reply = status(500) if failure == "500" else hang
    monkeypatch.setenv("TEST_MODEL_KEY", "sk-t")
    entry = provider(openai_base_url=f"{server.url}/v1", request_timeout_s=1, max_retries=0)
    started = time.monotonic()
    run = run_workflow(backend, remote_workflow(entry), {}, str(tmp_path / "store"))
    took = time.monotonic() - started

    assert run.record.status == "failed"
    (attempt,) = open_store(str(tmp_path / "store")).read_attempts(run.record.run_id, "ask")
    assert attempt.error is not None and attempt.error.provider_failed, attempt.error
    assert attempt.error.message.startswith("agent provider 'remote' (openai test-model at ")
    assert len(server.seen) == 1  # max_retries: 0, and no other retry layer
    print(f"{backend}, {failure}: failed after {took:.2f} s")  # the hang: ~1 s and the import
