"""Model providers against a real OpenAI-compatible HTTP server written for the tests.

The server runs in a thread on loopback and answers each request as the test says (an
answer with token usage, a 429 with ``Retry-After``, a 500, or nothing at all); the step
runs through the real runtime (CrewAI's own OpenAI client). What is checked is what the
server saw: how many requests, when, with which headers.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from agentic.contracts import StepResult
from agentic.runtime import execute_step
from agentic.store import open_store
from tests.factories import step_spec
from tests.integration.test_cancel_local import agentic_cancel, cli_env
from tests.model_servers import hang, http_server, send

ANSWER = "Thought: done\nFinal Answer: hello from the server"


@dataclass
class Seen:
    at: float
    path: str
    headers: dict[str, str]


@dataclass
class ModelServer:
    """What the server answers (``reply(handler)``) and every request it received."""

    url: str
    reply: Callable[[BaseHTTPRequestHandler], None]
    seen: list[Seen] = field(default_factory=list)


def answer(handler: BaseHTTPRequestHandler) -> None:
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 21, "completion_tokens": 5, "total_tokens": 26},
    }
    send(handler, 200, body)


def status(code: int, **headers: str) -> Callable[[BaseHTTPRequestHandler], None]:
    def reply(handler: BaseHTTPRequestHandler) -> None:
        send(handler, code, {"error": {"message": f"status {code}", "type": "test"}}, headers)

    return reply


@contextlib.contextmanager
def serving() -> Iterator[ModelServer]:
    """A model server on a free loopback port, answering until the block ends."""
    state = ModelServer(url="", reply=answer)

    def on_post(handler: BaseHTTPRequestHandler, body: bytes) -> None:
        state.seen.append(Seen(time.monotonic(), handler.path, dict(handler.headers)))
        state.reply(handler)

    with http_server(on_post) as url:
        state.url = url
        yield state


@pytest.fixture
def server() -> Iterator[ModelServer]:
    with serving() as state:
        yield state


def provider(**fields: Any) -> dict[str, Any]:
    return {
        "id": "remote",
        "type": "openai",
        "role": "Writer",
        "goal": "Write",
        "backstory": "Calls a model over HTTP.",
        "model": "test-model",
        "api_key_env": "TEST_MODEL_KEY",
        **fields,
    }


def run(entry: dict[str, Any], env: dict[str, str]) -> tuple[StepResult, float]:
    started = time.monotonic()
    result = execute_step(step_spec(agent_provider=entry), env={"TEST_MODEL_KEY": "sk-t", **env})
    return result, time.monotonic() - started


def test_headers_and_the_base_url_take_variables_and_tokens_come_from_the_response(
    server: ModelServer,
) -> None:
    entry = provider(
        openai_base_url="${MODEL_BASE}/v1", headers={"X-Team": "team-${TEAM}", "X-Fixed": "1"}
    )
    result, _ = run(entry, {"MODEL_BASE": server.url, "TEAM": "blue"})

    assert result.status == "succeeded", result.error
    assert result.output == "hello from the server"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (21, 5)
    [request] = server.seen
    assert request.path == "/v1/chat/completions"
    assert request.headers["X-Team"] == "team-blue"
    assert request.headers["X-Fixed"] == "1"
    assert request.headers["Authorization"] == "Bearer sk-t"


def test_a_429_is_retried_max_retries_times_as_retry_after_says_and_no_more(
    server: ModelServer,
) -> None:
    server.reply = status(429, **{"Retry-After": "1"})
    result, _ = run(provider(openai_base_url=f"{server.url}/v1", max_retries=1), {})

    assert result.status == "failed" and result.error is not None
    assert len(server.seen) == 2, "CrewAI's own retries multiplied the requests"
    assert server.seen[1].at - server.seen[0].at >= 0.9  # Retry-After: 1
    assert result.error.retryable
    assert result.error.message.startswith(
        f"agent provider 'remote' (openai test-model at {server.url}/v1): "
    )
    assert "429" in result.error.message


def test_without_max_retries_one_attempt_sends_three_requests_not_nine(
    server: ModelServer,
) -> None:
    server.reply = status(503, **{"retry-after-ms": "50"})
    result, _ = run(provider(openai_base_url=f"{server.url}/v1"), {})

    assert result.status == "failed" and result.error is not None and result.error.retryable
    assert len(server.seen) == 3  # the default of 2 retries, the only layer


def test_a_hanging_server_fails_the_step_after_its_request_timeout(server: ModelServer) -> None:
    server.reply = hang
    entry = provider(openai_base_url=f"{server.url}/v1", request_timeout_s=1, max_retries=0)
    result, took = run(entry, {})

    assert result.status == "failed" and result.error is not None
    assert result.error.retryable  # another attempt may find the server alive
    assert "timed out" in result.error.message.lower()
    assert "agent provider 'remote'" in result.error.message
    assert len(server.seen) == 1
    assert took < 10, f"{took:.1f}s: the request timeout of 1 s was not applied"


def test_an_ollama_provider_without_a_url_calls_ollama_host(server: ModelServer) -> None:
    entry = provider(type="ollama", api_key_env=None)
    result, _ = run(entry, {"OLLAMA_HOST": server.url})

    assert result.status == "succeeded", result.error
    assert [s.path for s in server.seen] == ["/v1/chat/completions"]


def test_a_header_naming_a_missing_variable_fails_the_step_for_good_and_names_it(
    server: ModelServer,
) -> None:
    entry = provider(openai_base_url=f"{server.url}/v1", headers={"X-Team": "${NO_SUCH_TEAM}"})
    result, _ = run(entry, {})

    assert result.status == "failed" and result.error is not None
    assert not result.error.retryable
    assert "NO_SUCH_TEAM" in result.error.message and "headers.X-Team" in result.error.message
    assert server.seen == []


def test_a_worker_without_the_key_fails_the_step_for_good_naming_the_variable_and_pool(
    server: ModelServer,
) -> None:
    entry = provider(openai_base_url=f"{server.url}/v1", api_key_env="ABSENT_MODEL_KEY")
    result = execute_step(step_spec(agent_provider=entry, pool="gpu"), env={})

    assert result.status == "failed" and result.error is not None
    assert not result.error.retryable
    assert "ABSENT_MODEL_KEY" in result.error.message
    assert "set it where the steps of pool 'gpu' run" in result.error.message
    assert server.seen == []


def test_a_steps_cost_is_its_tokens_at_the_providers_price(server: ModelServer) -> None:
    price = {"input_per_million": 2.0, "output_per_million": 8.0}
    priced, _ = run(provider(openai_base_url=f"{server.url}/v1", price=price), {})
    unpriced, _ = run(provider(openai_base_url=f"{server.url}/v1", model="gpt-4o-mini"), {})

    assert priced.status == "succeeded", priced.error
    assert priced.usage.cost_usd == pytest.approx((21 * 2.0 + 5 * 8.0) / 1_000_000)
    # A vendor's model name behind another server has no shipped price: unknown, not zero.
    assert unpriced.usage.cost_usd is None


# --- the default backend stops when told ----------------------------------------------------

HANGING_WORKFLOW = """\
workflow:
  name: hanging
  topic: patience
  agent_providers: [remote]
  tasks:
    - {id: ask, agent_provider_id: remote, description: Ask., expected_output: An answer.}
"""


def start_hanging_run(server: ModelServer, tmp_path: Path, run_id: str) -> tuple[Any, dict]:
    """``agentic run hanging`` on ``inprocess`` whose model call the server never answers."""
    server.reply = hang
    config = tmp_path / "config"
    (config / "agent_providers").mkdir(parents=True)
    (config / "workflows").mkdir()
    entry = provider(openai_base_url=f"{server.url}/v1", max_retries=0)
    (config / "agent_providers" / "remote.yaml").write_text(json.dumps(entry))
    (config / "workflows" / "hanging.yaml").write_text(HANGING_WORKFLOW)
    env = {**cli_env(str(tmp_path / "store"), config), "TEST_MODEL_KEY": "sk-t"}
    run = subprocess.Popen(
        [sys.executable, "-m", "agentic", "run", "hanging", "--run-id", run_id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 90
    while not server.seen:  # the model call is in flight
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.05)
    return run, env


def stopped_within(run: Any, limit_s: float) -> tuple[float, str]:
    asked = time.monotonic()
    try:
        _, err = run.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        run.kill()
        run.communicate()
        raise AssertionError(f"agentic run still waits {limit_s:g} s later") from None
    return time.monotonic() - asked, err


@pytest.mark.procs
def test_the_first_ctrl_c_stops_an_inprocess_run_whose_model_never_answers(
    server: ModelServer, tmp_path: Path
) -> None:
    run, _ = start_hanging_run(server, tmp_path, "ctrl-c-hang")

    run.send_signal(signal.SIGINT)  # once
    took, err = stopped_within(run, 20)

    assert run.returncode == 1, err
    record = open_store(str(tmp_path / "store")).read_run("ctrl-c-hang")
    assert record.status == "cancelled"
    assert len(server.seen) == 1
    print(f"stopped {took:.2f}s after one Ctrl-C")  # 1 s here; was never before the SDK's 600 s


@pytest.mark.procs
def test_agentic_cancel_ends_the_agentic_run_that_waits_on_a_hanging_model(
    server: ModelServer, tmp_path: Path
) -> None:
    run, env = start_hanging_run(server, tmp_path, "cancel-hang")

    done = agentic_cancel("cancel-hang", env)
    took, err = stopped_within(run, 20)

    assert done.returncode == 0, done.stderr
    assert run.returncode == 1, err
    record = open_store(str(tmp_path / "store")).read_run("cancel-hang")
    assert record.status == "cancelled" and record.error == "cancelled with agentic cancel"
    print(f"agentic run ended {took:.2f}s after agentic cancel returned")
