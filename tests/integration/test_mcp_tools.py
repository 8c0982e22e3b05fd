"""A scripted agent calls tools on the real demo MCP server, over stdio and streamable HTTP."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from agentic.contracts import AgentProvider, StepResult, StepSpec
from agentic.errors import ConfigError, RetryableStepFailure
from agentic.names import MCP_SIDECARS_ENV
from agentic.tools.demo_mcp import FACTS
from tests.fixtures.servers import free_port

with warnings.catch_warnings():
    # Importing CrewAI emits an ImportWarning about its own package layout (crewai.rag).
    warnings.simplefilter("ignore", ImportWarning)
    from crewai.mcp import MCPServerStdio

    from agentic.runtime import execute_step
    from agentic.runtime.agents import build_agent
    from agentic.runtime.llm import build_llm
    from agentic.runtime.mcp import server_configs, sidecar_urls, wait_for_sidecar

pytestmark = [
    pytest.mark.procs,
    pytest.mark.filterwarnings("ignore::ImportWarning"),
    # CrewAI's HTTP transport calls mcp's deprecated streamablehttp_client.
    pytest.mark.filterwarnings("ignore:Use `streamable_http_client` instead:DeprecationWarning"),
]

STDIO_DEMO = {
    "id": "demo",
    "stdio": {"command": "python", "args": ["-m", "agentic.tools.demo_mcp"]},
}


def run(mcp: dict[str, Any], replies: list[Any], env: dict[str, str] | None = None) -> StepResult:
    spec = StepSpec(
        run_id="run-mcp",
        step_id="research",
        step_index=0,
        attempt=1,
        workflow_name="tools",
        topic="nats",
        task={"description": "Research nats.", "expected_output": "One fact."},
        agent_provider={
            "id": "researcher",
            "type": "scripted",
            "role": "Researcher",
            "goal": "Find facts",
            "backstory": "Checks facts with tools.",
            "script": {"replies": replies},
        },
        mcp_providers=[{"id": mcp["id"], "resolved": mcp}],
        store_url="memory://unused",
    )
    return execute_step(spec, env={} if env is None else env)


LOOKUP = [{"tool": "lookup_fact", "args": {"topic": "{topic}"}}, "Fact: {tool_result}"]


def test_an_agent_calls_a_tool_of_a_stdio_server_and_uses_its_result() -> None:
    result = run(STDIO_DEMO, LOOKUP)
    assert result.status == "succeeded", result.error
    assert result.output == f"Fact: {FACTS['nats']}"


def deep_interpreter(tmp_path: Path) -> str:
    """This interpreter, reached through a path long enough to make CrewAI hash its tool names."""
    checkout = tmp_path.joinpath(*["a-rather-deep-checkout"] * 4)
    checkout.mkdir(parents=True)
    (checkout / ".venv").symlink_to(sys.prefix, target_is_directory=True)
    return str(checkout / ".venv" / "bin" / Path(sys.executable).name)


def test_tools_are_offered_as_provider_id_and_tool_wherever_the_server_is(
    tmp_path: Path, demo_mcp_http_url: str
) -> None:
    stdio = {
        "id": "local_tools",
        "stdio": {**STDIO_DEMO["stdio"], "command": deep_interpreter(tmp_path)},
    }
    http = {"id": "remote", "streamable_http": {"url": demo_mcp_http_url}, "tools": ["word_count"]}
    provider = AgentProvider(
        id="r", type="scripted", role="R", goal="G", backstory="B", script={"replies": []}
    )
    llm = build_llm(provider, step_id="s", topic="t", env={})
    agent = build_agent(provider, llm=llm, mcps=server_configs([stdio, http], {}))
    tools = agent.get_mcp_tools(agent.mcps or [])
    assert [t.name for t in tools] == [
        "local_tools_word_count",
        "local_tools_lookup_fact",
        "remote_word_count",
    ]


def test_a_tool_of_a_server_started_from_a_deep_path_is_called(tmp_path: Path) -> None:
    # CrewAI alone would offer this tool under a 64-character name ending in a hash.
    entry = {**STDIO_DEMO, "stdio": {**STDIO_DEMO["stdio"], "command": deep_interpreter(tmp_path)}}
    result = run(entry, LOOKUP)
    assert result.status == "succeeded", result.error
    assert result.output == f"Fact: {FACTS['nats']}"


def test_an_agent_calls_a_tool_of_a_streamable_http_server_and_uses_its_result(
    demo_mcp_http_url: str,
) -> None:
    count = [
        {"tool": "word_count", "args": {"text": "one two three four five"}},
        "{tool_result} words",
    ]
    result = run({"id": "demo", "streamable_http": {"url": demo_mcp_http_url}}, count)
    assert result.status == "succeeded", result.error
    assert result.output == "5 words"


def test_an_http_url_placeholder_expands_from_the_worker_environment(
    demo_mcp_http_port: int,
) -> None:
    entry = {"id": "demo", "streamable_http": {"url": "http://127.0.0.1:${DEMO_PORT}/mcp"}}
    result = run(entry, LOOKUP, env={"DEMO_PORT": str(demo_mcp_http_port)})
    assert result.output == f"Fact: {FACTS['nats']}"


def test_a_tool_outside_the_tools_list_is_not_offered_to_the_agent() -> None:
    result = run({**STDIO_DEMO, "tools": ["word_count"]}, LOOKUP)
    assert FACTS["nats"] not in result.output


def test_a_missing_placeholder_variable_fails_the_step_for_good_naming_it() -> None:
    entry = {**STDIO_DEMO, "stdio": {**STDIO_DEMO["stdio"], "env": {"KEY": "${DEMO_MCP_KEY}"}}}
    result = run(entry, LOOKUP)
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.type, result.error.retryable) == ("MissingEnvError", False)
    assert "DEMO_MCP_KEY" in result.error.message


def test_an_unreachable_http_server_is_a_retryable_failure() -> None:
    entry = {"id": "demo", "streamable_http": {"url": f"http://127.0.0.1:{free_port()}/mcp"}}
    result = run(entry, LOOKUP)
    assert result.status == "failed"
    assert result.error is not None and result.error.retryable


# --- MCP servers as sidecars (docs/kubernetes.md): the pod names where each one listens ---------
def sidecar_entry(port: int) -> dict[str, Any]:
    """A stdio provider whose command exists only in its sidecar's image."""
    sidecar = {"image": "registry.example.com/demo-mcp:1", "port": port}
    return {"id": "demo", "stdio": {"command": "not-in-this-image"}, "kubernetes": sidecar}


def test_a_step_connects_to_its_sidecar_instead_of_starting_the_command(
    demo_mcp_http_port: int,
) -> None:
    urls = {"demo": f"http://127.0.0.1:{demo_mcp_http_port}/mcp"}
    env = {MCP_SIDECARS_ENV: json.dumps(urls)}
    result = run(sidecar_entry(demo_mcp_http_port), LOOKUP, env=env)
    assert result.status == "succeeded", result.error
    assert result.output == f"Fact: {FACTS['nats']}"
    # A provider without a sidecar of its own is not redirected by the variable.
    assert isinstance(server_configs([STDIO_DEMO], env)["demo"], MCPServerStdio)


def test_a_sidecar_that_never_listens_fails_the_attempt_retryably_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}/mcp"
    with pytest.raises(RetryableStepFailure, match=r"'demo': its sidecar did not listen on"):
        wait_for_sidecar("demo", url, timeout_s=0.3)


def test_the_sidecar_variable_must_name_loopback_urls() -> None:
    assert sidecar_urls({}) == {}
    found = sidecar_urls({MCP_SIDECARS_ENV: '{"a": "http://127.0.0.1:1/mcp"}'})
    assert found == {"a": "http://127.0.0.1:1/mcp"}
    for bad in ("not json", '{"a": "http://evil.example/mcp"}', '["x"]'):
        with pytest.raises(ConfigError, match=MCP_SIDECARS_ENV):
            sidecar_urls({MCP_SIDECARS_ENV: bad})
