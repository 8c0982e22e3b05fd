"""A provider's shared budget (``limits:``) end to end, against a real HTTP model server
that counts the requests it serves at once: on the ``nats`` backend across two workers,
and on the ``subprocess`` backend within its driver.

Each request takes 0.75 s and every step has ``timeout_s: 2.5``: with ``concurrency: 2``
the eight parallel steps run in four waves, so the last ones wait at least 2.25 s for their
turn and end 3 s after they were ready. They succeed because the wait for budget is not part
of their time. (A step's own time, 0.75 s plus starting its crew, keeps 1.75 s of slack for
a busy 2-core machine: with 0.5 s and 2 s, the first steps of a worker still warming up
timed out once in CI.)
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from agentic.budget import LOCAL
from agentic.cli.process_stack import ProcessStack
from agentic.contracts import Limits
from agentic.settings import Settings
from agentic.store import open_store
from tests.factories import one_step, scripted_agent
from tests.integration.test_cancel_local import cli_env
from tests.integration.test_nats_backend import agentic, base_env
from tests.integration.test_provider_http import answer, provider
from tests.model_servers import http_server
from tests.parity import run_workflow

pytestmark = [pytest.mark.procs, pytest.mark.slow]

STEPS = 8
REPLY_S = 0.75


@dataclass
class CountingServer:
    url: str = ""
    inflight: int = 0
    most: int = 0
    served: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def model() -> Iterator[CountingServer]:
    state = CountingServer()

    def on_post(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        with state.lock:
            state.inflight += 1
            state.most = max(state.most, state.inflight)
        try:
            time.sleep(REPLY_S)
            answer(handler)
        finally:
            with state.lock:
                state.inflight -= 1
                state.served += 1

    with http_server(on_post) as url:
        state.url = url
        yield state


def catalog(root: Path, model: CountingServer) -> Path:
    config = root / "config"
    (config / "agent_providers").mkdir(parents=True)
    (config / "workflows").mkdir()
    entry = provider(
        id="limited",
        openai_base_url=f"{model.url}/v1",
        max_retries=0,
        limits={"concurrency": 2},
    )
    (config / "agent_providers" / "limited.yaml").write_text(json.dumps(entry))
    tasks = [
        {"id": f"s{i}", "agent_provider_id": "limited", "description": f"Part {i}.",
         "expected_output": "An answer.", "depends_on": [], "timeout_s": 2.5, "retries": 0}
        for i in range(STEPS)
    ]  # fmt: skip
    workflow = {"workflow": {"name": "wide", "agent_providers": ["limited"], "tasks": tasks}}
    (config / "workflows" / "wide.yaml").write_text(json.dumps(workflow))
    return config


def check_run(store_url: str, run_id: str, model: CountingServer, out: str) -> None:
    record = open_store(store_url).read_run(run_id)
    assert record.status == "succeeded", record.error
    assert model.served == STEPS
    assert model.most == 2, f"{model.most} requests at once"
    assert "waiting for limited budget" in out


@pytest.mark.nats
def test_two_workers_never_send_more_requests_at_once_than_the_providers_concurrency(
    model: CountingServer, tmp_path: Path
) -> None:
    config = catalog(tmp_path, model)
    store = str(tmp_path / "store")
    env = base_env(
        AGENTIC_RUN_STORE_URL=store, AGENTIC_CONFIG_DIR=str(config), TEST_MODEL_KEY="sk-t"
    )
    stack = ProcessStack(
        Settings(),
        workers=2,
        concurrency=4,
        isolation="thread",
        port=0,
        data_dir=tmp_path / "js",
        env=env,
    )
    stack.start()
    try:
        client = {**stack.env, "AGENTIC_NATS_URL": stack.url}
        proc = agentic("run", "wide", "--backend", "nats", "--run-id", "budgeted", env=client)
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
    finally:
        stack.stop()
    check_run(store, "budgeted", model, out)


def test_the_subprocess_driver_keeps_its_steps_within_the_providers_concurrency(
    model: CountingServer, tmp_path: Path
) -> None:
    config = catalog(tmp_path, model)
    store = str(tmp_path / "store")
    env = {**cli_env(store, config), "TEST_MODEL_KEY": "sk-t"}
    proc = agentic("run", "wide", "--backend", "subprocess", "--run-id", "budgeted", env=env)
    out, err = proc.communicate(timeout=90)

    assert proc.returncode == 0, err
    check_run(store, "budgeted", model, out)


def test_an_inprocess_task_waits_for_its_providers_budget_outside_its_timeout(
    tmp_path: Path,
) -> None:
    limits = Limits(concurrency=1)
    agent = scripted_agent("scarce").model_copy(update={"limits": limits})
    wf = one_step(agent, timeout_s=0.5, retries=0)
    held = LOCAL.try_acquire("scarce", limits)  # another run of this process holds the slot
    assert held is not None
    threading.Timer(1.5, LOCAL.release, args=(held, None)).start()

    run = run_workflow("inprocess", wf, {}, str(tmp_path / "store"))

    # Waited 1.5 s with a timeout of 0.5 s, and succeeded: the wait was not its time.
    assert run.record.status == "succeeded", run.record.error
    notes = [e.data for e in run.events if e.type == "step_progress"]
    assert notes == [{"message": "waiting for scarce budget"}]
    assert LOCAL.try_acquire("scarce", limits) is not None  # the run gave its slot back
