"""What the command line says before anything runs: the version, placeholders no input
fills, a run id that belongs to another workflow, plurals (issue "Run lifecycle at scale",
"One behaviour per YAML" and "CLI basics")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentic.cli import _register, app
from agentic.store import open_store
from tests.factories import make_catalog

_register()
runner = CliRunner()

pytestmark = [pytest.mark.filterwarnings("ignore::ImportWarning")]

PITCH = """\
workflow:
  name: pitch
  agent_providers: [alpha]
  tasks:
    - {id: pitch, agent_provider_id: alpha, description: "Pitch {topic} to {audience}",
       expected_output: text}
"""


@pytest.fixture
def catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = make_catalog(tmp_path / "config", {"workflows/pitch.yaml": PITCH})
    monkeypatch.setenv("AGENTIC_CONFIG_DIR", str(root))
    monkeypatch.setenv("AGENTIC_RUN_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("AGENTIC_EXECUTION_BACKEND", "inprocess")
    return tmp_path


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("agentic 0.")


@pytest.mark.parametrize("backend", ["inprocess", "subprocess", "nats"])
def test_a_placeholder_no_input_fills_is_refused_alike_on_every_backend(
    catalog: Path, backend: str
) -> None:
    result = runner.invoke(
        app, ["run", "pitch", "--backend", backend, "--input", "audiance=investors"]
    )

    assert result.exit_code == 2
    assert (
        "task 'pitch' (description) uses {audience}, which no input fills "
        "(inputs: audiance, topic): pass --input audience=…" in result.output
    )
    assert open_store(str(catalog / "store")).list_run_ids() == []


def test_the_input_a_placeholder_names_lets_it_run(catalog: Path) -> None:
    result = runner.invoke(app, ["run", "pitch", "--input", "audience=investors", "--json"])
    assert result.exit_code == 0, result.output


def test_a_run_id_of_another_workflow_is_refused_and_the_same_request_is_one_run(
    catalog: Path,
) -> None:
    pitch = ["run", "pitch", "--run-id", "mine", "-i", "audience=x"]
    first = runner.invoke(app, pitch)
    assert first.exit_code == 0, first.output

    again = runner.invoke(app, pitch)
    other = runner.invoke(app, ["run", "flow", "--run-id", "mine"])

    assert again.exit_code == 0  # the same request: that run, reported again
    assert other.exit_code == 2
    assert "run 'mine' exists and is a run of workflow 'pitch', not of workflow 'flow'" in (
        other.output
    )


def test_one_more_problem_is_singular(tmp_path: Path) -> None:
    root = make_catalog(
        tmp_path,
        {
            "agent_providers/alpha.yaml": "id: alpha\ntype: scripted\nrole: r\ngoal: g\n",
            "agent_providers/beta.yaml": None,
        },
    )
    from agentic.catalog import load_catalog
    from agentic.errors import CatalogError

    with pytest.raises(CatalogError) as info:
        load_catalog([root], env={})
    assert "(and 1 more problem: run `agentic validate`)" in str(info.value)


def test_init_writes_a_starter_catalog_that_validates_and_runs_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "cfg"
    made = runner.invoke(app, ["init", str(target)])
    assert made.exit_code == 0, made.output
    monkeypatch.setenv("AGENTIC_CONFIG_DIR", str(target))
    monkeypatch.setenv("AGENTIC_RUN_STORE_URL", str(tmp_path / "store"))
    monkeypatch.setenv("AGENTIC_EXECUTION_BACKEND", "inprocess")

    valid = runner.invoke(app, ["validate"])
    ran = runner.invoke(app, ["run", "hello", "--topic", "tea", "--json"])

    assert valid.exit_code == 0 and "2 agent providers, 0 MCP providers, 1 workflow: OK" in (
        valid.output
    )
    assert ran.exit_code == 0, ran.output
    assert '"status": "succeeded"' in ran.output and "A short brief on tea" in ran.output
    again = runner.invoke(app, ["init", str(target)])
    assert again.exit_code == 2 and "exists: choose an empty directory" in again.output


def test_catalog_lists_every_entry_with_what_it_lacks_here(
    catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = catalog / "config"
    (root / "agent_providers" / "paid.yaml").write_text(
        "id: paid\ntype: openai\nmodel: gpt-4o-mini\napi_key_env: PAID_KEY\n"
        "role: r\ngoal: g\nbackstory: b\n"
    )
    monkeypatch.delenv("PAID_KEY", raising=False)

    listed = runner.invoke(app, ["catalog", "--json"])

    assert listed.exit_code == 0, listed.output
    rows = {(r["kind"], r["id"]): r for r in json.loads(listed.output)["entries"]}
    assert rows["agent provider", "paid"]["missing"] == ["PAID_KEY"]
    assert rows["agent provider", "alpha"]["missing"] == []
    assert rows["MCP provider", "tools"]["type"] == "stdio"
    assert rows["workflow", "pitch"]["type"] == "1 task"
    text = runner.invoke(app, ["catalog"], env={"COLUMNS": "200"}).output
    assert any(line.startswith("agent provider  paid") and "needs PAID_KEY" in line
               for line in text.splitlines())  # fmt: skip


def test_a_run_that_cannot_start_is_recorded_failed_never_left_pending(
    catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(catalog / "no-such-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    result = runner.invoke(
        app, ["run", "pitch", "-i", "audience=x", "--backend", "kubernetes", "--run-id", "k8s"]
    )

    assert result.exit_code == 2
    assert "cannot reach a Kubernetes API server" in result.output
    record = open_store(str(catalog / "store")).read_run("k8s")
    assert record.status == "failed" and record.finished_at is not None
    assert (record.error or "").startswith("the run could not start on kubernetes: cannot reach")


SLOW = """\
id: slow
type: scripted
role: r
goal: g
backstory: b
script: {replies: ["slowly on {step_id}"], delay_s: 0.7}
"""
TWO_SLOW = """\
workflow:
  name: twoslow
  agent_providers: [slow]
  tasks:
    - {id: first, agent_provider_id: slow, description: d, expected_output: e}
    - {id: second, agent_provider_id: slow, description: d, expected_output: e}
"""


@pytest.mark.procs
def test_watch_follows_a_subprocess_run_from_another_terminal_to_its_end(catalog: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    root = catalog / "config"
    (root / "agent_providers" / "slow.yaml").write_text(SLOW)
    (root / "workflows" / "twoslow.yaml").write_text(TWO_SLOW)
    env = {**os.environ, "AGENTIC_CONFIG_DIR": str(root),
           "AGENTIC_RUN_STORE_URL": str(catalog / "store")}  # fmt: skip
    running = subprocess.Popen(
        [sys.executable, "-m", "agentic", "run", "twoslow", "--backend", "subprocess",
         "--run-id", "followed"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        store = open_store(str(catalog / "store"))
        deadline = time.monotonic() + 60
        while not store.run_exists("followed"):
            assert time.monotonic() < deadline and running.poll() is None
            time.sleep(0.05)
        watched = subprocess.run(
            [sys.executable, "-m", "agentic", "watch", "followed", "--interval", "0.2"],
            env=env, capture_output=True, text=True, timeout=90,
        )  # fmt: skip
    finally:
        running.wait(timeout=60)
    assert watched.returncode == 0, watched.stderr
    assert "slowly on second" in watched.stdout  # the run's output, as `agentic run` ends
    assert "second succeeded" in watched.stdout
    assert runner.invoke(app, ["watch", "nobody"]).exit_code == 2
    # Each step's end says how long its attempt ran, as `agentic show` does (not the time
    # between two of the watcher's looks).
    from agentic.cli.progress import format_duration

    shown = json.loads(runner.invoke(app, ["show", "followed", "--json"]).stdout)
    for step in shown["steps"]:
        took = format_duration(step["duration_s"])
        assert f"{step['step_id']} succeeded (attempt 1) in {took}" in watched.stdout
