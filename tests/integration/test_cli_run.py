"""`agentic run`: real workflows on real backends, the exit codes, `--json`, progress, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import agentic.execution
from agentic.cli import _register, app
from agentic.contracts import RunEvent
from agentic.store import open_store
from tests.factories import REPO, make_catalog

_register()
runner = CliRunner()

# Importing CrewAI emits an ImportWarning about its own package layout (crewai.rag).
pytestmark = [pytest.mark.procs, pytest.mark.filterwarnings("ignore::ImportWarning")]

AGENTIC = Path(sys.executable).parent / "agentic"

CATALOG = {
    "agent_providers/gamma.yaml": """\
        id: gamma
        type: scripted
        role: Writer
        goal: Write about {topic}
        backstory: Writes.
        script:
          replies: ["final words on {topic} from {step_id}"]
    """,
    "agent_providers/failer.yaml": """\
        id: failer
        type: scripted
        role: Breaker
        goal: Fail
        backstory: Always fails.
        script:
          replies: ["never"]
          fail: {times: 9, mode: fatal, message: the tool refused}
    """,
    "workflows/hello.yaml": """\
        workflow:
          name: hello
          topic: greetings
          agent_providers: [alpha, gamma]
          tasks:
            - {id: draft, agent_provider_id: alpha, description: "Draft {topic}",
               expected_output: a draft}
            - {id: final, agent_provider_id: gamma, description: "Finish {topic}",
               expected_output: text}
          task_sequence: [draft, final]
    """,
    "agent_providers/sleeper.yaml": """\
        id: sleeper
        type: scripted
        role: Sleeper
        goal: Take long
        backstory: Slow.
        script:
          replies: ["too late"]
          delay_s: 60
    """,
    "workflows/slow.yaml": """\
        workflow:
          name: slow
          agent_providers: [sleeper]
          tasks:
            - {id: nap, agent_provider_id: sleeper, description: d, expected_output: e}
            - {id: after, agent_provider_id: sleeper, description: d, expected_output: e}
    """,
    "workflows/broken.yaml": """\
        workflow:
          name: broken
          agent_providers: [alpha, failer]
          tasks:
            - {id: ok, agent_provider_id: alpha, description: d, expected_output: e}
            - {id: boom, agent_provider_id: failer, description: d, expected_output: e}
            - {id: never, agent_provider_id: alpha, description: d, expected_output: e}
          task_sequence: [ok, boom, never]
    """,
}  # fmt: skip


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A small catalog and an empty file store; the default backend is `inprocess`."""
    config = make_catalog(tmp_path / "config", dict(CATALOG))
    store = tmp_path / "store"
    monkeypatch.setenv("AGENTIC_CONFIG_DIR", str(config))
    monkeypatch.setenv("AGENTIC_RUN_STORE_URL", str(store))
    monkeypatch.setenv("AGENTIC_EXECUTION_BACKEND", "inprocess")
    monkeypatch.setenv("AGENTIC_RETRY_BACKOFF_BASE_S", "0.01")
    monkeypatch.setenv("COLUMNS", "200")
    return {"config": config, "store": str(store)}


def invoke(*args: str):
    return runner.invoke(app, ["run", *args])


def run_ids(store_url: str) -> list[str]:
    return sorted(r if isinstance(r, str) else r.run_id for r in open_store(store_url).list_runs())


def test_a_workflow_runs_prints_its_output_and_a_summary_and_exits_0(env):
    result = invoke("hello", "--topic", "tea", "--run-id", "run-tea")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "final words on tea from final" in out
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("run run-tea succeeded in ")
    assert "2/2 steps" in summary and "tokens" in summary


def test_without_a_terminal_progress_is_one_plain_line_per_event(env):
    out = invoke("hello", "--run-id", "run-plain").stdout
    assert "\x1b[" not in out  # no cursor movement or colour in logs and pipes
    lines = out.splitlines()
    assert lines[0] == "run run-plain on inprocess: draft, final"
    assert any("draft succeeded (attempt 1)" in line for line in lines)
    assert any("final succeeded" in line for line in lines)


def test_json_prints_one_document_with_every_step(env):
    result = invoke("hello", "--json", "--run-id", "run-json", "--label", "team=docs")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # stdout is the document and nothing else
    assert (doc["run_id"], doc["status"], doc["error"]) == ("run-json", "succeeded", None)
    assert doc["output"] == "final words on greetings from final"
    assert doc["labels"] == {"team": "docs"}
    assert [s["step_id"] for s in doc["steps"]] == ["draft", "final"]
    for step in doc["steps"]:
        assert (step["status"], step["attempt"]) == ("succeeded", 1)
        assert step["duration_s"] is not None and step["duration_s"] >= 0
        assert step["usage"]["total_tokens"] > 0


def test_a_workflow_file_runs_and_is_stored_inline(env, tmp_path):
    path = env["config"] / "workflows" / "hello.yaml"
    result = invoke(str(path), "--json", "--run-id", "run-file")
    assert result.exit_code == 0, result.output
    record = open_store(env["store"]).read_run("run-file")
    assert record.request.workflow is not None and record.request.workflow_ref is None


def test_inputs_reach_the_steps(env):
    result = invoke("hello", "-i", "topic=coffee", "--input", "mood=calm", "--json")
    doc = json.loads(result.stdout)
    assert doc["inputs"] == {"topic": "coffee", "mood": "calm"}
    assert doc["output"] == "final words on coffee from final"


def test_a_failed_run_exits_1_and_says_which_step_failed_and_why(env):
    result = invoke("broken", "--run-id", "run-broken")
    assert result.exit_code == 1
    assert "boom" in result.stderr and "the tool refused" in result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("run run-broken failed")
    doc = json.loads(invoke("broken", "--json").stdout)
    statuses = {s["step_id"]: s["status"] for s in doc["steps"]}
    assert statuses == {"ok": "succeeded", "boom": "failed", "never": "skipped"}
    assert doc["status"] == "failed" and "the tool refused" in doc["error"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "unknown workflow 'nope'"),
        (["hello", "--input", "topic"], "--input 'topic'"),
        (["hello", "--run-id", "../../etc/passwd"], "unsafe run id"),
        (["hello", "--backend", "ray"], "unknown backend 'ray'"),
        (["hello", "--goal", "write"], "either a WORKFLOW"),
        ([], "either a WORKFLOW"),
        (["missing/flow.yaml"], "missing/flow.yaml"),
        (["hello", "--detach"], "--backend nats"),
    ],
)
def test_bad_usage_exits_2_with_one_clear_line_and_writes_nothing(env, args, message):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""
    assert run_ids(env["store"]) == []


def test_the_same_run_id_twice_is_one_run(env):
    first = invoke("hello", "--run-id", "run-once", "--json")
    second = invoke("hello", "--run-id", "run-once", "--json")
    assert (first.exit_code, second.exit_code) == (0, 0)
    assert json.loads(second.stdout)["run_id"] == "run-once"
    assert run_ids(env["store"]) == ["run-once"]


class InterruptedBackend:
    """Starts the first step, then the user presses Ctrl-C."""

    name = "inprocess"

    def run(self, record, store, settings, on_event):
        first, *rest = record.steps
        running = [first.model_copy(update={"status": "running", "attempt": 1}), *rest]
        store.write_run(record.model_copy(update={"status": "running", "steps": running}))
        on_event(
            RunEvent(
                run_id=record.run_id, seq=0, type="step_started", step_id=first.step_id, attempt=1
            )
        )
        raise KeyboardInterrupt


def test_ctrl_c_cancels_the_run_and_exits_1(env, monkeypatch):
    monkeypatch.setattr(agentic.execution, "get_backend", lambda name: InterruptedBackend())
    result = invoke("hello", "--run-id", "run-ctrl-c")
    assert result.exit_code == 1
    assert "cancelled" in result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("run run-ctrl-c cancelled")
    record = open_store(env["store"]).read_run("run-ctrl-c")
    assert record.status == "cancelled"
    assert [s.status for s in record.steps] == ["cancelled", "skipped"]


def test_make_demo_runs_the_demo_and_show_lists_every_step(tmp_path):
    """The real console script, as `make demo` runs it, in a pipe (so: plain progress)."""
    env = {
        **os.environ,
        "AGENTIC_RUN_STORE_URL": str(tmp_path / "store"),
        "CREWAI_DISABLE_TELEMETRY": "true",
    }
    env.pop("AGENTIC_CONFIG_DIR", None)
    run = subprocess.run(
        [str(AGENTIC), "run", "demo", "--topic", "durable agent workflows", "--run-id", "run-demo"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "\x1b[" not in run.stdout
    assert "durable agent workflows" in run.stdout
    assert run.stdout.strip().splitlines()[-1].startswith("run run-demo succeeded in ")

    show = subprocess.run(
        [str(AGENTIC), "show", "run-demo"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert show.returncode == 0, show.stderr
    for step in ("research", "write", "edit"):
        assert any(line.lstrip().startswith(step) for line in show.stdout.splitlines()), step


def test_ctrl_c_on_a_real_run_cancels_it_and_exits_1(env):
    """SIGINT to the process group, as a terminal sends it, while a step process runs."""
    child_env = {**os.environ, "CREWAI_DISABLE_TELEMETRY": "true"}
    args = [str(AGENTIC), "run", "slow", "--backend", "subprocess", "--run-id", "run-int"]
    process = subprocess.Popen(
        args,
        env=child_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # Background processes inherit an ignored SIGINT; a terminal's foreground job does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        spec = Path(env["store"]) / "runs" / "run-int" / "steps" / "nap" / "spec.json"
        deadline = time.monotonic() + 60
        while not spec.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert spec.exists(), "the first step never started"
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 1, out + err
    assert "cancelled" in err
    assert out.strip().splitlines()[-1].startswith("run run-int cancelled in ")
    record = open_store(env["store"]).read_run("run-int")
    assert record.status == "cancelled"
    assert [s.status for s in record.steps] == ["cancelled", "skipped"]
