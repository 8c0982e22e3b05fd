"""The ``nats`` backend end to end: real nats-server, coordinator and worker processes.

Guarantees (3) a nats-server restart mid-run, (7) ``agentic cancel`` and (8) parity with
``inprocess``, plus the embedded stack of ``agentic run --backend nats``, Ctrl-C, and the
external nats-py client against ``agentic up``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from agentic.backends.nats import NatsBackend
from agentic.catalog import load_catalog, load_workflow
from agentic.cli import _register, app
from agentic.cli.process_stack import ProcessStack
from agentic.cli.progress import format_duration
from agentic.settings import Settings
from agentic.store import open_store
from tests.factories import REPO, write_files
from tests.parity import run_workflow, stored_layout

# The inprocess reference run imports CrewAI, which warns about its own package layout.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.nats,
    pytest.mark.procs,
    pytest.mark.filterwarnings("ignore::ImportWarning"),
]

PYTHON = sys.executable
_register()
runner = CliRunner()
SLOW_STEPS = """\
    id: slow
    type: scripted
    role: Slow writer
    goal: Take a while over {topic}
    backstory: Thinks before answering.
    script:
      replies: ["slow words on {topic} from {step_id}"]
      delay_s: 0.6
"""
HANGING = """\
    id: hanging
    type: scripted
    role: Stuck
    goal: Never finish
    backstory: Waits forever.
    script:
      replies: ["never"]
      fail: {times: 9, mode: hang}
"""
DOWN = """\
    id: down
    type: scripted
    role: Overloaded
    goal: Answer {topic}
    backstory: Its server answers 503.
    script:
      replies: ["never"]
      fail: {times: 9, mode: unavailable, message: "503 overloaded"}
    fallback: [spare]
"""
SPARE = """\
    id: spare
    type: scripted
    role: Spare
    goal: Answer {topic}
    backstory: Takes over.
    script:
      replies: ["the spare answered {step_id}"]
"""
PRICEY = """\
    id: pricey
    type: scripted
    role: Expensive
    goal: Answer {topic}
    backstory: A dollar a token.
    script:
      replies: ["an answer of several words"]
    price: {input_per_million: 1000000, output_per_million: 1000000}
"""
CRITIC = """\
    id: critic
    type: scripted
    role: Critic
    goal: Judge
    backstory: Strict.
    script:
      replies: ['{"score": 2, "reasons": ["off topic"]}']
"""
BROKEN = """\
    id: broken
    type: scripted
    role: Archivist
    goal: Fetch the records
    backstory: The archive never answers.
    script:
      replies: ["never"]
      fail: {times: 9, mode: fatal, message: the archive refused}
"""
BIG = (
    "id: big\ntype: scripted\nrole: Verbose\ngoal: Write a lot\nbackstory: Never stops.\n"
    f"script:\n  replies: [{'x' * 100}]\n  repeat: 100000\n"
)
WORKFLOWS = {
    "agent_providers/slow.yaml": SLOW_STEPS,
    "agent_providers/big.yaml": BIG,
    "workflows/bigout.yaml": """\
        workflow:
          name: bigout
          agent_providers: [big]
          tasks:
            - {id: write, agent_provider_id: big, description: Write, expected_output: x}
            - {id: sum, agent_provider_id: slow, description: Sum up, expected_output: x}
    """,
    "agent_providers/critic.yaml": CRITIC,
    "workflows/judged.yaml": """\
        workflow:
          name: judged
          agent_providers: [spare]
          review: {provider: critic, min_score: 5}
          tasks:
            - {id: ask, agent_provider_id: spare, description: Ask, expected_output: x}
    """,
    "agent_providers/pricey.yaml": PRICEY,
    "workflows/capped.yaml": """\
        workflow:
          name: capped
          agent_providers: [pricey]
          max_cost_usd: 1
          tasks:
            - {id: one, agent_provider_id: pricey, description: First, expected_output: x}
            - {id: two, agent_provider_id: pricey, description: Second, expected_output: x}
    """,
    "agent_providers/down.yaml": DOWN,
    "agent_providers/spare.yaml": SPARE,
    "workflows/fallback.yaml": """\
        workflow:
          name: fallback
          agent_providers: [down]
          tasks:
            - {id: ask, agent_provider_id: down, description: Ask, expected_output: x,
               retries: 0}
    """,
    "agent_providers/hanging.yaml": HANGING,
    "agent_providers/broken.yaml": BROKEN,
    "workflows/doomed.yaml": """\
        workflow:
          name: doomed
          agent_providers: [slow, broken]
          tasks:
            - {id: first, agent_provider_id: slow, description: Begin, expected_output: text}
            - {id: second, agent_provider_id: broken, description: Fetch, expected_output: x}
          task_sequence: [first, second]
    """,
    "workflows/slow.yaml": """\
        workflow:
          name: slow
          topic: patience
          agent_providers: [slow]
          tasks:
            - {id: first, agent_provider_id: slow, description: "Start on {topic}",
               expected_output: text}
            - {id: second, agent_provider_id: slow, description: Go on, expected_output: text}
            - {id: third, agent_provider_id: slow, description: Finish, expected_output: text}
          task_sequence: [first, second, third]
    """,
    "workflows/stuck.yaml": """\
        workflow:
          name: stuck
          agent_providers: [hanging]
          tasks:
            - {id: wait, agent_provider_id: hanging, description: Wait, expected_output: x,
               timeout_s: 300}
          task_sequence: [wait]
    """,
}


def base_env(**extra: str) -> dict[str, str]:
    # Keeps where `agentic up` leaves its client credential (tests/conftest.py), so that
    # clients find it as a user's would.
    keep = {"AGENTIC_NATS_CREDENTIALS_DIR"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTIC_") or k in keep}
    env.update(CREWAI_DISABLE_TELEMETRY="true", COLUMNS="200", **extra)
    return env


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example catalog plus a slow workflow and a hanging one."""
    root = tmp_path_factory.mktemp("config")
    for sub in ("agent_providers", "mcp_providers", "workflows"):
        for path in (REPO / "config" / sub).glob("*.yaml"):
            write_files(root, {f"{sub}/{path.name}": path.read_text()})
    return write_files(root, dict(WORKFLOWS))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, catalog: Path) -> Iterator[ProcessStack]:
    """nats-server (file storage), a coordinator and a worker, as `agentic up` runs them."""
    root = tmp_path_factory.mktemp("stack")
    env = base_env(
        AGENTIC_RUN_STORE_URL=str(root / "store"),
        AGENTIC_CONFIG_DIR=str(catalog),
        AGENTIC_RETRY_BACKOFF_BASE_S="0.05",
    )
    stack = ProcessStack(Settings(), workers=1, port=0, data_dir=root / "js", env=env)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def store_url(stack: ProcessStack) -> str:
    return stack.env["AGENTIC_RUN_STORE_URL"]


def client_env(stack: ProcessStack, **extra: str) -> dict[str, str]:
    return {**stack.env, "AGENTIC_NATS_URL": stack.url, **extra}


def wait_for(
    condition: Callable[[], bool],
    within_s: float,
    what: str,
    proc: subprocess.Popen[str] | None = None,
) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the client exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def step_status(url: str, run_id: str, step_id: str) -> str | None:
    store = open_store(url)
    if not store.run_exists(run_id):
        return None
    return {s.step_id: s.status for s in store.read_run(run_id).steps}.get(step_id)


_started: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_process_left_behind() -> Iterator[None]:
    """A failing test must not leave its clients (and their embedded servers) running:
    SIGINT first, so an embedded stack stops its nats-server, then SIGKILL."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def cli(stack: ProcessStack, *args: str) -> Result:
    """``agentic ARGS`` in this process (no interpreter to start), as a client of ``stack``."""
    return runner.invoke(app, list(args), env=client_env(stack))


def agentic(*args: str, env: dict[str, str], **kwargs) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [PYTHON, "-m", "agentic", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )
    _started.append(proc)
    return proc


# --- the embedded stack ------------------------------------------------------------------------


def nats_servers_using(directory: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            is_nats = bool(cmdline) and cmdline[0].endswith(b"nats-server")
            if is_nats and str(directory).encode() in cmdline:
                pids.append(int(proc.name))
    return pids


def test_run_on_nats_without_a_server_brings_its_own_stack_and_prints_the_output(
    tmp_path: Path,
) -> None:
    env = base_env(
        AGENTIC_RUN_STORE_URL=str(tmp_path / "store"),
        AGENTIC_CONFIG_DIR=str(REPO / "config"),
        AGENTIC_NATS_DATA_DIR=str(tmp_path / "js"),
    )
    proc = agentic(
        "run",
        "demo",
        "--backend",
        "nats",
        "--topic",
        "embedded brokers",
        "--run-id",
        "embedded-1",
        env=env,
        cwd=tmp_path,
    )
    out, err = proc.communicate(timeout=90)

    assert proc.returncode == 0, err
    assert "# embedded brokers, edited" in out  # the editor's final output
    assert out.strip().splitlines()[-1].startswith("run embedded-1 succeeded")
    record = open_store(str(tmp_path / "store")).read_run("embedded-1")
    assert record.backend == "nats" and record.status == "succeeded"
    assert nats_servers_using(tmp_path / "js") == []  # the embedded server is gone


def test_detach_without_a_server_is_refused_because_the_run_would_die_with_the_command(
    tmp_path: Path,
) -> None:
    env = base_env(AGENTIC_RUN_STORE_URL=str(tmp_path / "store"))
    proc = agentic("run", "demo", "--backend", "nats", "--detach", env=env, cwd=REPO)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "agentic up" in err and "AGENTIC_NATS_URL" in err


# --- guarantee 8: parity -----------------------------------------------------------------------


def test_the_demo_gives_the_same_outputs_and_stored_steps_on_nats_as_inprocess(
    stack: ProcessStack, tmp_path: Path
) -> None:
    demo = load_workflow("demo", load_catalog([REPO / "config"]))
    inputs = {"topic": "parity checks"}
    reference_url = str(tmp_path / "inprocess")
    reference = run_workflow("inprocess", demo, inputs, reference_url, run_id="parity-run")

    settings = Settings(nats_url=stack.url, run_store_url=store_url(stack))
    on_nats = run_workflow(
        NatsBackend(), demo, inputs, store_url(stack), settings=settings, run_id="parity-run"
    )

    assert reference.record.status == "succeeded"
    assert on_nats.record.status == "succeeded", on_nats.record.error
    assert on_nats.outputs == reference.outputs
    assert list(on_nats.outputs) == ["research", "write", "edit"]
    assert "lookup_fact" in on_nats.outputs["research"]  # the MCP tool ran on the worker
    layout = stored_layout(store_url(stack), "parity-run")
    assert layout == stored_layout(reference_url, "parity-run")
    # The same spec, prior outputs merged alike; only where the store is differs.
    specs = [
        open_store(url).read_spec("parity-run", "edit").model_copy(update={"store_url": ""})
        for url in (reference_url, store_url(stack))
    ]
    assert specs[0] == specs[1]
    assert [e.seq for e in on_nats.events] == list(range(len(on_nats.events)))
    assert on_nats.events[-1].type == "succeeded"


# --- guarantee 3: nats-server restart ----------------------------------------------------------


def test_a_run_survives_a_nats_server_restart_in_the_middle(stack: ProcessStack) -> None:
    proc = agentic(
        "run", "slow", "--backend", "nats", "--run-id", "restart-1", env=client_env(stack)
    )
    url = store_url(stack)
    wait_for(lambda: step_status(url, "restart-1", "first") == "succeeded", 60, "step one", proc)

    assert stack.server is not None
    stack.server.restart()  # file storage: streams and the work queue survive

    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert "slow words on patience from third" in out
    store = open_store(url)
    assert store.read_run("restart-1").status == "succeeded"
    for step in ("first", "second", "third"):
        assert [a.attempt for a in store.read_attempts("restart-1", step)] == [1]


def test_detach_prints_the_run_id_at_once_and_the_run_finishes_without_the_client(
    stack: ProcessStack,
) -> None:
    done = subprocess.run(
        [
            PYTHON,
            "-m",
            "agentic",
            "run",
            "slow",
            "--backend",
            "nats",
            "--detach",
            "--run-id",
            "detached-1",
        ],
        env=client_env(stack),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "detached-1"
    url = store_url(stack)
    assert open_store(url).read_run("detached-1").status in ("pending", "running")
    # Followed from another process until it ends (`agentic watch`), with its exit code.
    watched = subprocess.run(
        [PYTHON, "-m", "agentic", "watch", "detached-1", "--interval", "0.2"],
        env=client_env(stack),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert watched.returncode == 0, watched.stderr
    assert "slow words on patience from third" in watched.stdout
    assert re.search(r"third (started|succeeded)", watched.stdout), watched.stdout
    assert open_store(url).read_run("detached-1").status == "succeeded"


def test_watch_follows_a_detached_run_that_fails_to_its_end_and_exits_1(
    stack: ProcessStack,
) -> None:
    detached = subprocess.run(
        [PYTHON, "-m", "agentic", "run", "doomed", "--backend", "nats", "--detach",
         "--run-id", "detached-2"],
        env=client_env(stack), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert detached.returncode == 0, detached.stderr

    watched = cli(stack, "watch", "detached-2", "--interval", "0.2")

    assert watched.exit_code == 1, watched.output
    assert re.search(r"first (ready|started)", watched.output), watched.output  # still going
    assert "second failed (attempt 1)" in watched.output
    assert "ScriptedFatalError: the archive refused" in watched.output  # the attempt's error
    assert open_store(store_url(stack)).read_run("detached-2").status == "failed"
    # Each step's end says how long its attempt ran, as `agentic show` does.
    shown = json.loads(cli(stack, "show", "detached-2", "--json").stdout)
    for step in shown["steps"]:
        verb = "succeeded" if step["step_id"] == "first" else "failed"
        took = format_duration(step["duration_s"])
        assert f"{step['step_id']} {verb} (attempt 1) in {took}" in watched.output


def test_a_client_with_a_store_of_its_own_records_the_run_from_its_events(
    stack: ProcessStack, tmp_path: Path
) -> None:
    own = str(tmp_path / "client-store")  # e.g. `agentic run` from another directory
    proc = agentic(
        "run",
        "slow",
        "--backend",
        "nats",
        "--run-id",
        "elsewhere-1",
        env=client_env(stack, AGENTIC_RUN_STORE_URL=own),
    )
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 0, err
    assert "slow words on patience from third" in out
    assert f"the coordinator records runs in {open_store(store_url(stack)).url}" in err
    mine = open_store(own).read_run("elsewhere-1")
    assert mine.status == "succeeded" and mine.output == "slow words on patience from third"
    assert [s.status for s in mine.steps] == ["succeeded"] * 3
    assert open_store(store_url(stack)).read_result("elsewhere-1", "third") is not None


def test_a_worker_runs_the_next_attempt_on_the_fallback_provider(stack: ProcessStack) -> None:
    ran = cli(stack, "run", "fallback", "--backend", "nats", "--run-id", "nats-fallback")

    assert ran.exit_code == 0, ran.output
    assert "the spare answered ask" in ran.output
    attempts = open_store(store_url(stack)).read_attempts("nats-fallback", "ask")
    assert [(a.attempt, a.status, a.provider) for a in attempts] == [
        (1, "failed", "down"),
        (2, "succeeded", "spare"),
    ]


def test_the_coordinator_stops_a_run_whose_cost_passed_its_limit(stack: ProcessStack) -> None:
    ran = cli(stack, "run", "capped", "--backend", "nats", "--run-id", "nats-capped")

    assert ran.exit_code == 1, ran.output
    store = open_store(store_url(stack))
    record = store.read_run("nats-capped")
    assert record.status == "failed"
    assert "max_cost_usd is $1.0000 (after step 'one')" in (record.error or "")
    assert store.read_attempts("nats-capped", "two") == []


def test_a_workers_review_below_min_score_fails_the_run(stack: ProcessStack) -> None:
    ran = cli(stack, "run", "judged", "--backend", "nats", "--run-id", "nats-judged")

    assert ran.exit_code == 1, ran.output
    record = open_store(store_url(stack)).read_run("nats-judged")
    assert record.error == "the review scored step 'ask' 2/10, below min_score 5: off topic"
    assert record.review is not None and record.review["score"] == 2.0


def test_a_ten_megabyte_step_output_goes_through_the_store_not_the_bus(
    stack: ProcessStack,
) -> None:
    ran = cli(stack, "run", "bigout", "--backend", "nats", "--run-id", "nats-big")

    assert ran.exit_code == 0, ran.output[-2000:]
    assert "slow words" in ran.output  # the step after it ran, on a capped excerpt of it
    written = open_store(store_url(stack)).read_result("nats-big", "write")
    assert written is not None and len(written.output) == 10_099_999


# --- guarantee 7 and Ctrl-C: cancellation ------------------------------------------------------


def test_agentic_cancel_stops_a_running_step_within_seconds(stack: ProcessStack) -> None:
    proc = agentic(
        "run", "stuck", "--backend", "nats", "--run-id", "cancel-1", env=client_env(stack)
    )
    url = store_url(stack)
    wait_for(lambda: step_status(url, "cancel-1", "wait") == "running", 60, "the step to run", proc)

    started = time.monotonic()
    cancel = subprocess.run(
        [PYTHON, "-m", "agentic", "cancel", "cancel-1"],
        env=client_env(stack),
        capture_output=True,
        text=True,
        timeout=30,
    )
    _, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - started

    assert cancel.returncode == 0, cancel.stderr
    assert proc.returncode == 1, err
    assert elapsed < 10
    record = open_store(url).read_run("cancel-1")
    assert record.status == "cancelled"
    assert [s.status for s in record.steps] == ["cancelled"]


def test_cancelling_an_unknown_run_exits_2(stack: ProcessStack) -> None:
    cancel = subprocess.run(
        [PYTHON, "-m", "agentic", "cancel", "no-such-run"],
        env=client_env(stack),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert cancel.returncode == 2
    assert "no-such-run" in cancel.stderr


def test_ctrl_c_cancels_the_run_on_the_coordinator_and_exits_1(stack: ProcessStack) -> None:
    proc = agentic(
        "run", "stuck", "--backend", "nats", "--run-id", "ctrl-c-1", env=client_env(stack)
    )
    url = store_url(stack)
    wait_for(lambda: step_status(url, "ctrl-c-1", "wait") == "running", 60, "the step to run", proc)

    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)

    assert proc.returncode == 1, err
    record = open_store(url).read_run("ctrl-c-1")
    assert record.status == "cancelled"
    # The coordinator, not the client, ended it: the worker's step is cancelled, not running.
    wait_for(lambda: step_status(url, "ctrl-c-1", "wait") == "cancelled", 10, "the step")


# --- the external client against `agentic up` --------------------------------------------------


def test_the_nats_py_client_example_runs_the_demo_against_agentic_up(tmp_path: Path) -> None:
    env = base_env(
        AGENTIC_RUN_STORE_URL=str(tmp_path / "store"), AGENTIC_CONFIG_DIR=str(REPO / "config")
    )
    up = agentic(
        "up",
        "--workers",
        "1",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path / "js"),
        env=env,
        cwd=tmp_path,
    )
    try:
        assert up.stdout is not None
        lines = []
        while not lines or not lines[-1].startswith("Ready."):
            line = up.stdout.readline()
            assert line, f"agentic up exited: {up.stderr.read() if up.stderr else ''}"
            lines.append(line.strip())
        url = re.search(r"nats://[\d.]+:\d+", "\n".join(lines))
        assert url is not None
        client = subprocess.run(
            [
                PYTHON,
                str(REPO / "scripts" / "submit_run.py"),
                "demo",
                "topic=any language",
                "--url",
                url.group(0),
                "--run-id",
                "external-1",
                "--timeout",
                "120",
            ],
            capture_output=True,
            text=True,
            timeout=150,
        )
    finally:
        up.send_signal(signal.SIGTERM)
        _, up_err = up.communicate(timeout=60)

    assert client.returncode == 0, client.stderr
    events = [line for line in client.stdout.splitlines() if line.startswith("[")]
    assert events[-1].startswith(f"[{len(events) - 1}] succeeded")
    assert "# any language, edited" in client.stdout
    assert up.returncode == 0, up_err
    record = open_store(str(tmp_path / "store")).read_run("external-1")
    assert record.status == "succeeded"
    assert json.loads(record.request.model_dump_json())["workflow_ref"] == "demo"
