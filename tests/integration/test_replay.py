"""`agentic replay`: reuse without model calls, resume a failed run, across backends and stores.

Model calls are counted with CrewAI's own ``LLMCallStartedEvent`` (every scripted reply
emits one, named after the task, i.e. the step): what a replay does not execute cannot
appear there. Steps on ``subprocess`` run in child processes, where the store shows what
ran: an executed step has an attempt file written by another process, a reused one has none.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from agentic.cli import _register, app
from agentic.contracts import RunRequest
from agentic.execution import run_to_completion
from agentic.runtime.step import with_outputs_read
from agentic.settings import Settings
from agentic.store import open_store
from tests.factories import make_catalog

_register()
runner = CliRunner()

# Importing CrewAI emits an ImportWarning about its own package layout (crewai.rag).
pytestmark = [pytest.mark.procs, pytest.mark.filterwarnings("ignore::ImportWarning")]

NOTES_REPLY = "Notes on {topic}.\n\n```markdown file=notes.md\n# Notes on {topic}\n```\n"

CATALOG = {
    "agent_providers/echo.yaml": """\
        id: echo
        type: scripted
        role: Echo
        goal: Repeat {topic}
        backstory: Repeats.
        script:
          replies: ["{step_id} done for {topic}"]
    """,
    "agent_providers/notes.yaml": f"""\
        id: notes
        type: scripted
        role: Note taker
        goal: Take notes on {{topic}}
        backstory: Takes notes.
        script:
          replies: [{json.dumps(NOTES_REPLY)}]
    """,
    "agent_providers/flaky.yaml": """\
        id: flaky
        type: scripted
        role: Flaky
        goal: Fail once
        backstory: Fails its first attempt.
        script:
          replies: ["flaky finished {step_id}"]
          fail: {times: 1, mode: fatal, message: the tool refused}
    """,
    "agent_providers/steady.yaml": """\
        id: steady
        type: scripted
        role: Steady
        goal: Never fail
        backstory: Reliable.
        script:
          replies: ["steady finished {step_id} on {topic}"]
    """,
    "agent_providers/braces.yaml": """\
        id: braces
        type: scripted
        role: Templater
        goal: Write templates
        backstory: Writes braces.
        script:
          replies: ["{step_id} keeps {braces} for {topic}"]
    """,
    "workflows/diamond.yaml": """\
        workflow:
          name: diamond
          topic: branches
          agent_providers: [braces, echo]
          tasks:
            - {id: a, agent_provider_id: braces, description: "A", expected_output: e}
            - {id: b, agent_provider_id: echo, description: "B", expected_output: e,
               depends_on: [a]}
            - {id: c, agent_provider_id: braces, description: "C", expected_output: e,
               depends_on: [a]}
            - {id: d, agent_provider_id: echo, description: "D", expected_output: e,
               depends_on: [b, c]}
          task_sequence: [a, b, c, d]
    """,
    "workflows/four.yaml": """\
        workflow:
          name: four
          topic: replays
          agent_providers: [notes, echo]
          tasks:
            - {id: s1, agent_provider_id: notes, description: "One {topic}", expected_output: e}
            - {id: s2, agent_provider_id: echo, description: "Two {topic}", expected_output: e}
            - {id: s3, agent_provider_id: echo, description: "Three {topic}", expected_output: e}
            - {id: s4, agent_provider_id: echo, description: "Four {topic}", expected_output: e}
          task_sequence: [s1, s2, s3, s4]
    """,
    "workflows/shaky.yaml": """\
        workflow:
          name: shaky
          topic: resumes
          agent_providers: [echo, flaky]
          tasks:
            - {id: first, agent_provider_id: echo, description: "First", expected_output: e,
               retries: 0}
            - {id: second, agent_provider_id: flaky, description: "Second", expected_output: e,
               retries: 0}
          task_sequence: [first, second]
    """,
}  # fmt: skip


@pytest.fixture
def env(tmp_path, monkeypatch) -> Settings:
    """A catalog, an empty file store, the settings (and the CLI's environment) for both."""
    config = make_catalog(tmp_path / "config", dict(CATALOG))
    store = tmp_path / "store"
    monkeypatch.setenv("AGENTIC_CONFIG_DIR", str(config))
    monkeypatch.setenv("AGENTIC_RUN_STORE_URL", str(store))
    monkeypatch.setenv("AGENTIC_EXECUTION_BACKEND", "inprocess")
    return Settings(config_dir=str(config), run_store_url=str(store))


@contextlib.contextmanager
def llm_calls() -> Iterator[list[str]]:
    """The step (task name) of every model call made in this process inside the block."""
    from crewai.events import crewai_event_bus
    from crewai.events.types.llm_events import LLMCallStartedEvent

    calls: list[str] = []
    with crewai_event_bus.scoped_handlers():

        @crewai_event_bus.on(LLMCallStartedEvent)
        def _count(source: object, event: LLMCallStartedEvent) -> None:
            calls.append(str(event.task_name))

        yield calls
        crewai_event_bus.flush()


def run(settings: Settings, workflow: str, backend: str = "inprocess", **fields: object):
    request = RunRequest(workflow_ref=workflow, backend=backend, **fields)  # type: ignore[arg-type]
    return run_to_completion(request, settings, lambda event: None)


def replay(*args: str):
    return runner.invoke(app, ["replay", *args, "--json"])


def test_a_replay_from_step_3_of_4_calls_the_model_only_for_steps_3_and_4(env):
    with llm_calls() as original_calls:
        original = run(env, "four")
    assert original.status == "succeeded"
    assert sorted(original_calls) == ["s1", "s2", "s3", "s4"]  # the counter sees every call

    with llm_calls() as replay_calls:
        result = replay(original.run_id, "--from", "s3")

    assert result.exit_code == 0, result.output
    assert sorted(replay_calls) == ["s3", "s4"]
    shown = json.loads(result.stdout)
    assert shown["replay_of"] == original.run_id
    store = open_store(env.run_store_url)
    new_id = shown["run_id"]
    for step in ("s1", "s2"):
        reused = store.read_result(new_id, step)
        assert reused is not None and reused.reused_from == original.run_id
        assert reused.output == store.read_result(original.run_id, step).output
        assert store.read_attempts(new_id, step) == []  # no attempt: nothing ran
    assert store.read_result(new_id, "s3").reused_from is None
    assert store.read_artifact(new_id, "s1", "notes.md") == b"# Notes on replays\n"
    assert store.read_run(new_id).request.replay_of.from_step == "s3"


def test_an_inprocess_replay_of_a_dag_runs_only_the_step_and_its_dependents(env):
    original = run(env, "diamond")
    assert original.status == "succeeded", original.error

    with llm_calls() as calls:
        result = replay(original.run_id, "--from", "b")

    assert result.exit_code == 0, result.output
    assert calls == ["b", "d"]  # c, a parallel branch, is reused like a
    new_id = json.loads(result.stdout)["run_id"]
    store = open_store(env.run_store_url)
    d_spec = store.read_spec(new_id, "d")
    # d saw b's new output and c's reused one, braces and all, as on every backend.
    assert d_spec.prior_steps == ["b", "c"]
    assert with_outputs_read(d_spec, store).prior_outputs == {
        "b": "b done for branches",
        "c": "c keeps {braces} for branches",
    }


def test_a_run_whose_step_2_failed_is_resumed_to_success_with_a_working_provider(env):
    with llm_calls() as calls:
        failed = run(env, "shaky", inputs={"topic": "resuming"})
    assert failed.status == "failed"
    assert "the tool refused" in (failed.error or "")
    assert calls == ["first"]  # a scripted failure raises before its call is made

    with llm_calls() as calls:
        result = replay(failed.run_id, "--set", "tasks.second.agent_provider_id=steady")

    assert result.exit_code == 0, result.output
    assert calls == ["second"]  # resumed at the first step that did not succeed
    shown = json.loads(result.stdout)
    assert shown["status"] == "succeeded"
    assert shown["output"] == "steady finished second on resuming"  # the old inputs kept


def test_a_run_made_on_subprocess_replays_on_inprocess(env):
    failed = run(env, "shaky", backend="subprocess")
    assert failed.status == "failed"
    assert failed.backend == "subprocess"

    with llm_calls() as calls:
        result = replay(
            failed.run_id,
            "--backend",
            "inprocess",
            "--set",
            "agent_providers.flaky.script.fail=null",
        )

    assert result.exit_code == 0, result.output
    assert calls == ["second"]
    shown = json.loads(result.stdout)
    assert (shown["backend"], shown["status"]) == ("inprocess", "succeeded")
    assert shown["output"] == "flaky finished second"


def test_a_run_made_on_inprocess_replays_on_subprocess(env):
    original = run(env, "four", inputs={"topic": "crossing"})

    with llm_calls() as calls:
        result = replay(original.run_id, "--from", "s4", "--backend", "subprocess")

    assert result.exit_code == 0, result.output
    assert calls == []  # nothing ran in this process
    new_id = json.loads(result.stdout)["run_id"]
    store = open_store(env.run_store_url)
    [attempt] = store.read_attempts(new_id, "s4")
    assert attempt.worker is not None and attempt.worker.pid != os.getpid()
    assert attempt.output == "s4 done for crossing"
    assert [store.read_attempts(new_id, s) for s in ("s1", "s2", "s3")] == [[], [], []]
    assert store.read_artifact(new_id, "s1", "notes.md") == b"# Notes on crossing\n"


@pytest.mark.nats
def test_a_run_made_on_nats_replays_on_inprocess_and_back_on_nats(env, monkeypatch):
    monkeypatch.delenv("AGENTIC_NATS_URL", raising=False)  # each command embeds its own stack
    made = runner.invoke(app, ["run", "four", "--backend", "nats", "--json"])
    assert made.exit_code == 0, made.output
    original = json.loads(made.stdout)["run_id"]

    with llm_calls() as calls:
        on_inprocess = replay(original, "--from", "s4", "--backend", "inprocess")

    assert on_inprocess.exit_code == 0, on_inprocess.output
    assert calls == ["s4"]
    middle = json.loads(on_inprocess.stdout)["run_id"]

    back = replay(middle, "--from", "s3", "--backend", "nats")

    assert back.exit_code == 0, back.output
    shown = json.loads(back.stdout)
    assert (shown["backend"], shown["status"]) == ("nats", "succeeded")
    store = open_store(env.run_store_url)
    executed = [s for s in ("s1", "s2", "s3", "s4") if store.read_attempts(shown["run_id"], s)]
    assert executed == ["s3", "s4"]
    assert store.read_result(shown["run_id"], "s1").reused_from == original  # the producer


def test_a_run_in_an_s3_store_is_replayed_from_there(env, s3_server, monkeypatch, tmp_path):
    url = s3_server.unique_url()
    monkeypatch.setenv("AGENTIC_RUN_STORE_URL", url)
    # The knowledge index of a remote store is a cache file: not in the tester's home.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    original = run(env.model_copy(update={"run_store_url": url}), "four")
    assert original.status == "succeeded"

    with llm_calls() as calls:
        result = replay(original.run_id, "--from", "s2", "--store", url)

    assert result.exit_code == 0, result.output
    assert sorted(calls) == ["s2", "s3", "s4"]
    new_id = json.loads(result.stdout)["run_id"]
    store = open_store(url)
    assert store.read_run(new_id).replay_of == original.run_id
    assert store.read_result(new_id, "s1").reused_from == original.run_id


def test_replaying_an_unknown_run_exits_2_naming_it(env):
    result = replay("run-that-never-was")

    assert result.exit_code == 2
    assert "no run 'run-that-never-was'" in result.stderr


def test_replaying_from_an_unknown_step_exits_2_listing_the_steps(env):
    original = run(env, "shaky")

    result = replay(original.run_id, "--from", "third")

    assert result.exit_code == 2
    assert "--from 'third'" in result.stderr
    assert "(steps: first, second)" in result.stderr


def test_a_bad_set_path_exits_2_and_starts_nothing(env):
    original = run(env, "shaky")
    before = len(open_store(env.run_store_url).list_runs())

    result = replay(original.run_id, "--set", "tasks.second.agent=steady")

    assert result.exit_code == 2
    assert "no field 'tasks.second.agent'" in result.stderr
    assert len(open_store(env.run_store_url).list_runs()) == before
