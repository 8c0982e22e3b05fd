"""`agentic cancel` of runs driven by a local process (inprocess, subprocess), through the store.

The run and the cancel are separate processes, as for a user with two terminals: the
cancel writes ``cancel.json``, the driving process finds it and stops the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agentic import names
from agentic.backends.local.launched import LauncherBackend
from agentic.backends.subprocess import StepProcess
from agentic.cli import _register, app
from agentic.contracts import RunEvent, RunRecord, RunRequest, ScriptedFailure
from agentic.processes import children_of, parents
from agentic.recording.cancel import CancelRequests, cancel_document, cancel_scope
from agentic.settings import Settings
from agentic.store import open_store
from tests.factories import one_step, scripted_agent
from tests.integration.test_backends_local import alive, recording_backend

pytestmark = pytest.mark.procs

_register()

SLEEPER = """
    id: sleeper
    type: scripted
    role: Sleeper
    goal: Take your time with {topic}
    backstory: Slow on purpose.
    script:
      replies: ["slept on {topic}"]
      delay_s: 1.5
"""
NAP = """
    - id: nap{n}
      agent_provider_id: sleeper
      description: Sleep on {{topic}}.
      expected_output: One line.
"""


def write_slow_catalog(config: Path, naps: int) -> None:
    """The scripted ``sleeper`` (1.5 s per step) and the workflow ``slow`` of ``naps`` steps."""
    tasks = "".join(NAP.format(n=n) for n in range(1, naps + 1))
    workflow = "workflow:\n  name: slow\n  topic: patience\n  agent_providers: [sleeper]\n"
    workflow += "  tasks:" + textwrap.indent(textwrap.dedent(tasks), "    ")
    for name, text in {
        "agent_providers/sleeper.yaml": textwrap.dedent(SLEEPER),
        "workflows/slow.yaml": workflow,
    }.items():
        (config / name).parent.mkdir(parents=True, exist_ok=True)
        (config / name).write_text(text)


def cli_env(store_url: str, config_dir: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_")}
    env["AGENTIC_RUN_STORE_URL"] = store_url
    if config_dir is not None:
        env["AGENTIC_CONFIG_DIR"] = str(config_dir)
    return env


def agentic_cancel(
    run_id: str, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """``agentic cancel`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "agentic", "cancel", run_id, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def wait_running(store_url: str, run_id: str, step_id: str, timeout: float = 90.0) -> None:
    store = open_store(store_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if store.run_exists(run_id):
            steps = {s.step_id: s.status for s in store.read_run(run_id).steps}
            if steps.get(step_id) == "running":
                return
        time.sleep(0.1)
    raise AssertionError(f"step {step_id} of run {run_id} never showed running")


def subprocess_run(run_id: str, **fields: Any) -> RunRecord:
    """A one-step run record of the subprocess backend (``fields``: status, labels …)."""
    wf = one_step(scripted_agent())
    return RunRecord(
        run_id=run_id, request=RunRequest(workflow=wf), workflow=wf, backend="subprocess", **fields
    )


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return str(tmp_path / "store")


def test_agentic_cancel_stops_a_subprocess_run_driven_by_another_process(store_url: str) -> None:
    handles: list[StepProcess] = []
    backend: LauncherBackend = recording_backend(handles)
    agent = scripted_agent(fail=ScriptedFailure(times=5, mode="hang"))
    wf = one_step(agent)
    record = RunRecord(run_id="far-cancel", request=RunRequest(workflow=wf), workflow=wf,
                       backend="subprocess")  # fmt: skip
    store = open_store(store_url)
    store.create_run(record)
    events: list[RunEvent] = []
    finals: list[RunRecord] = []
    driver = threading.Thread(
        target=lambda: finals.append(backend.run(record, store, Settings(), events.append))
    )
    driver.start()
    try:
        wait_running(store_url, "far-cancel", "only")
        done = agentic_cancel("far-cancel", cli_env(store_url))
    finally:
        backend.cancel("far-cancel", reason="test cleanup")  # only if the cancel failed
        driver.join(timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "run far-cancel: cancelled"
    (final,) = finals
    assert final.status == "cancelled" and final.error == "cancelled with agentic cancel"
    assert events[-1].type == "cancelled"
    assert not alive(handles[0].pid)
    request = store.cancel_request("far-cancel")
    assert request is not None and request["pid"] != os.getpid()


def test_agentic_cancel_interrupts_an_inprocess_run_as_ctrl_c_does(
    store_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    # Twelve steps of 1.5 s each. An inprocess cancel, like Ctrl-C, takes effect once the
    # model call in progress returns (CrewAI runs it on a thread that cannot be stopped).
    write_slow_catalog(config, naps=12)
    env = cli_env(store_url, config)
    run = subprocess.Popen(
        [sys.executable, "-m", "agentic", "run", "slow", "--run-id", "nap-1", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_running(store_url, "nap-1", "nap2")
        done = agentic_cancel("nap-1", env)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "run nap-1: cancelled"
    assert run.returncode == 1, err  # the run was cancelled
    record = open_store(store_url).read_run("nap-1")
    assert record.status == "cancelled"
    assert record.error == "cancelled with agentic cancel"
    assert '"status": "cancelled"' in out
    statuses = [s.status for s in record.steps]  # stopped between two steps' model calls
    assert statuses[0] == "succeeded" and statuses[-1] == "skipped"


def test_cancelling_a_finished_run_reports_its_status(store_url: str) -> None:
    store = open_store(store_url)
    store.create_run(subprocess_run("done-1", status="succeeded"))

    result = CliRunner().invoke(app, ["cancel", "done-1"], env=cli_env(store_url))

    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "run done-1: succeeded"
    assert store.cancel_request("done-1") is None  # nothing to ask


def test_a_run_no_process_drives_is_not_cancelled_and_exits_1(store_url: str) -> None:
    store = open_store(store_url)
    store.create_run(subprocess_run("orphan-1", status="running"))

    result = CliRunner().invoke(
        app, ["cancel", "orphan-1", "--wait", "0.5"], env=cli_env(store_url)
    )

    assert result.exit_code == 1
    assert "still running after 0.5 s" in result.stderr
    assert "backend subprocess" in result.stderr
    assert store.cancel_request("orphan-1") is not None  # a later driver would still see it


def test_cancelling_an_unknown_run_without_nats_exits_2(store_url: str) -> None:
    result = CliRunner().invoke(app, ["cancel", "nowhere"], env=cli_env(store_url))
    assert result.exit_code == 2
    assert "no run 'nowhere'" in result.stderr


def test_a_cancel_request_is_written_once_and_read_at_most_every_interval(
    store_url: str,
) -> None:
    store = open_store(store_url)
    now = [100.0]
    requests = CancelRequests(store, ["r-1"], interval_s=1.0, clock=lambda: now[0])
    assert store.request_cancel("r-1", cancel_document("first"))
    assert not store.request_cancel("r-1", cancel_document("second"))  # the first is kept

    assert requests.due() is None  # not yet due
    now[0] += 1.0
    assert requests.due() == "first"
    assert requests.due() is None  # read again only after another interval
    now[0] += 1.0
    assert requests.due() == "first"


def test_a_round_of_an_iterative_goal_is_cancelled_with_its_goal(store_url: str) -> None:
    store = open_store(store_url)
    round_run = subprocess_run("goal-1-r2", labels={names.ITERATIVE_PARENT_LABEL: "goal-1"})
    now = [0.0]
    requests = CancelRequests(store, cancel_scope(round_run), interval_s=1.0, clock=lambda: now[0])
    assert cancel_scope(round_run) == ["goal-1-r2", "goal-1"]

    store.request_cancel("goal-1", cancel_document("the goal was cancelled"))
    now[0] += 1.0

    assert requests.due() == "the goal was cancelled"


def step_processes_of(pid: int) -> list[int]:
    """The step processes of the driver ``pid``: children of its warm fork server, that
    is grandchildren of ``pid``."""
    table = parents()
    return [step for server in children_of(pid, table) for step in children_of(server, table)]


def test_a_killed_subprocess_run_takes_its_step_along_shows_abandoned_and_replays_once(
    store_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    write_slow_catalog(config, naps=3)
    env = cli_env(store_url, config)
    command = [sys.executable, "-m", "agentic", "run", "slow", "--backend", "subprocess"]
    run = subprocess.Popen(
        [*command, "--run-id", "killed-1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_running(store_url, "killed-1", "nap2")
        deadline = time.monotonic() + 30
        while not (steps := step_processes_of(run.pid)):
            assert time.monotonic() < deadline, "no step process of nap2"
            time.sleep(0.02)
    finally:
        run.kill()  # SIGKILL: no chance to clean up
        run.wait()
    killed_at = time.monotonic()
    while any(alive(pid) for pid in steps):
        assert time.monotonic() - killed_at < 5, "a step process outlived its driver"
        time.sleep(0.02)
    gone_after = time.monotonic() - killed_at

    listing = subprocess.run(
        [sys.executable, "-m", "agentic", "runs", "--status", "abandoned", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    shown = subprocess.run(
        [sys.executable, "-m", "agentic", "show", "killed-1"],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    cancelled = agentic_cancel("killed-1", env)
    replay = subprocess.run(
        [sys.executable, "-m", "agentic", "replay", "killed-1", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert [r["run_id"] for r in json.loads(listing.stdout)] == ["killed-1"]
    assert "abandoned" in shown.stdout and "agentic replay killed-1" in shown.stdout
    assert cancelled.returncode == 1 and "is abandoned" in cancelled.stderr, cancelled.stderr
    assert replay.returncode == 0, replay.stderr
    store = open_store(store_url)
    new = store.read_run(json.loads(replay.stdout)["run_id"])
    assert new.status == "succeeded" and new.replay_of == "killed-1"
    nap1 = store.read_result(new.run_id, "nap1")
    assert nap1 is not None and nap1.reused_from == "killed-1"  # not paid for twice
    assert store.read_result("killed-1", "nap2") is None  # its step died with the driver
    for step in [s.step_id for s in new.steps][1:]:
        assert len(store.read_attempts(new.run_id, step)) == 1, step
    print(f"the step process was gone {gone_after:.2f}s after its driver's SIGKILL")
