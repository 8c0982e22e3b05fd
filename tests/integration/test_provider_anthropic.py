"""The ``anthropic`` provider against a real Anthropic Messages API server written for the tests.

As ``test_provider_http.py`` does for ``openai``: the server runs in a thread on loopback and
answers ``POST /v1/messages`` as the test says (a message with token usage, a 429 with
``retry-after``, or nothing at all); the step runs through the real runtime, CrewAI's native
Anthropic provider and the ``anthropic`` SDK. What is checked is what the server saw: how
many requests, when, where, with which headers.

Before every model call CrewAI asks ``POST /v1/messages/count_tokens`` whether the prompt
fits the context window (an agent's ``respect_context_window``; a failure there is
swallowed and it estimates instead), through the same client: same key, headers, timeout
and retries. The server answers it separately and the tests count both.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from agentic.contracts import StepResult
from agentic.runtime import execute_step
from agentic.runtime.agents import provider_from
from agentic.runtime.llm import build_llm
from tests.factories import step_spec
from tests.model_servers import hang, http_server, send

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("anthropic") is None,
    reason="needs the anthropic SDK: pip install -e '.[anthropic]'",
)

ANSWER = "Thought: done\nFinal Answer: hello from anthropic"
INPUT_TOKENS, OUTPUT_TOKENS = 34, 7


@dataclass
class Seen:
    at: float
    path: str
    headers: dict[str, str]  # names in lower case: HTTP's are case-insensitive
    body: dict[str, Any]


Reply = Callable[[BaseHTTPRequestHandler], None]
MESSAGES, COUNT = "/v1/messages", "/v1/messages/count_tokens"


@dataclass
class MessagesServer:
    """What the server answers to a message (``reply``) and to a token count (``count``),
    and every request it received."""

    url: str
    reply: Reply
    count: Reply
    seen: list[Seen] = field(default_factory=list)

    def requests(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]


def message(handler: BaseHTTPRequestHandler) -> None:
    body = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "text", "text": ANSWER}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
    }
    send(handler, 200, body)


def token_count(handler: BaseHTTPRequestHandler) -> None:
    send(handler, 200, {"input_tokens": INPUT_TOKENS})


def rate_limited(handler: BaseHTTPRequestHandler) -> None:
    error = {"type": "rate_limit_error", "message": "Number of requests has exceeded your limit"}
    send(handler, 429, {"type": "error", "error": error}, {"retry-after": "1"})


@pytest.fixture
def server() -> Iterator[MessagesServer]:
    state = MessagesServer(url="", reply=message, count=token_count)

    def on_post(handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        headers = {name.lower(): value for name, value in handler.headers.items()}
        seen = Seen(time.monotonic(), handler.path, headers, json.loads(raw or b"{}"))
        state.seen.append(seen)
        (state.count if handler.path == COUNT else state.reply)(handler)

    with http_server(on_post) as url:
        state.url = url
        yield state


def provider(**fields: Any) -> dict[str, Any]:
    return {
        "id": "claude",
        "type": "anthropic",
        "role": "Writer",
        "goal": "Write",
        "backstory": "Calls Claude over HTTP.",
        "model": "claude-test",
        "api_key_env": "TEST_ANTHROPIC_KEY",
        **fields,
    }


def run(entry: dict[str, Any], env: dict[str, str]) -> tuple[StepResult, float]:
    started = time.monotonic()
    spec = step_spec(agent_provider=entry)
    result = execute_step(spec, env={"TEST_ANTHROPIC_KEY": "sk-ant-t", **env})
    return result, time.monotonic() - started


def test_a_step_gets_the_answer_and_its_tokens_from_the_messages_api(
    server: MessagesServer,
) -> None:
    entry = provider(
        anthropic_base_url="${CLAUDE_BASE}", headers={"X-Team": "team-${TEAM}", "X-Fixed": "1"}
    )
    result, _ = run(entry, {"CLAUDE_BASE": server.url, "TEAM": "blue"})

    assert result.status == "succeeded", result.error
    assert result.output == "hello from anthropic"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (
        INPUT_TOKENS,
        OUTPUT_TOKENS,
    )
    assert [s.path for s in server.seen] == [COUNT, MESSAGES]  # the preflight, the call
    for request in server.seen:
        assert request.headers["x-api-key"] == "sk-ant-t"
        assert request.headers["anthropic-version"]
        assert request.headers["x-team"] == "team-blue"
        assert request.headers["x-fixed"] == "1"
        assert request.body["model"] == "claude-test"
    [call] = server.requests(MESSAGES)
    assert call.body["messages"] and call.body["max_tokens"] > 0


def test_a_429_is_retried_max_retries_times_as_retry_after_says_and_no_more(
    server: MessagesServer,
) -> None:
    server.reply = rate_limited
    result, _ = run(provider(anthropic_base_url=server.url, max_retries=1), {})

    assert result.status == "failed" and result.error is not None
    calls = server.requests(MESSAGES)
    assert len(calls) == 2, "CrewAI's own retries multiplied the requests"
    assert calls[1].at - calls[0].at >= 0.9  # retry-after: 1
    assert calls[1].headers["x-stainless-retry-count"] == "1"
    assert len(server.requests(COUNT)) == 1
    assert result.error.retryable
    assert result.error.message.startswith(
        f"agent provider 'claude' (anthropic claude-test at {server.url}): "
    )
    assert "429" in result.error.message and "rate_limit_error" in result.error.message


def test_a_429_on_the_token_count_too_costs_its_own_retries_first(
    server: MessagesServer,
) -> None:
    server.reply = server.count = rate_limited
    result, took = run(provider(anthropic_base_url=server.url, max_retries=1), {})

    assert result.status == "failed" and result.error is not None and result.error.retryable
    assert [s.path for s in server.seen] == [COUNT, COUNT, MESSAGES, MESSAGES]
    counts, calls = server.requests(COUNT), server.requests(MESSAGES)
    assert counts[1].at - counts[0].at >= 0.9 and calls[1].at - calls[0].at >= 0.9
    assert took >= 1.8  # two waits of retry-after: 1


def test_a_hanging_server_fails_the_step_after_its_request_timeout(
    server: MessagesServer,
) -> None:
    server.reply = server.count = hang
    entry = provider(anthropic_base_url=server.url, request_timeout_s=1, max_retries=0)
    result, took = run(entry, {})

    assert result.status == "failed" and result.error is not None
    assert result.error.retryable  # another attempt may find the server alive
    assert "timed out" in result.error.message.lower()
    assert "agent provider 'claude'" in result.error.message
    assert len(server.requests(MESSAGES)) == 1
    assert len(server.requests(COUNT)) == 1  # the preflight timed out first, then estimated
    assert took < 10, f"{took:.1f}s: the request timeout of 1 s was not applied"


def test_without_request_timeout_s_a_request_gets_the_sdks_600_s_not_none() -> None:
    entry = provider(anthropic_base_url="http://127.0.0.1:9", headers={"X-Team": "blue"})
    llm = build_llm(provider_from(entry), step_id="s", topic="t", env={"TEST_ANTHROPIC_KEY": "k"})

    # CrewAI hands its Anthropic clients timeout=None (no timeout at all) unless told.
    for client in (llm._client, llm._async_client):
        assert client.timeout == 600.0
        assert client.max_retries == 2
        assert client.default_headers["X-Team"] == "blue"


def test_a_steps_cost_is_its_tokens_at_the_providers_price(server: MessagesServer) -> None:
    price = {"input_per_million": 3.0, "output_per_million": 15.0}
    result, _ = run(provider(anthropic_base_url=server.url, price=price), {})

    assert result.status == "succeeded", result.error
    expected = (INPUT_TOKENS * 3.0 + OUTPUT_TOKENS * 15.0) / 1_000_000
    assert result.usage.cost_usd == pytest.approx(expected)
