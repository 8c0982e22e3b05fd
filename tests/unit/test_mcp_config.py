"""MCP provider entries become CrewAI MCP configurations, placeholders expanded in the worker."""

from __future__ import annotations

import sys
import warnings
from typing import Any

import pytest

from agentic.errors import CatalogError, MissingEnvError

with warnings.catch_warnings():
    # Importing CrewAI emits an ImportWarning about its own package layout (crewai.rag).
    warnings.simplefilter("ignore", ImportWarning)
    from crewai.mcp import MCPServerHTTP, MCPServerStdio

    from agentic.runtime.mcp import server_config, server_configs

pytestmark = pytest.mark.filterwarnings("ignore::ImportWarning")


def stdio_entry(**stdio: Any) -> dict[str, Any]:
    return {"id": "files", "stdio": {"command": "npx", **stdio}}


def test_stdio_placeholders_in_command_args_and_env_expand_from_the_worker_env() -> None:
    entry = {
        "id": "files",
        "stdio": {
            "command": "${TOOLS_BIN}/files-server",
            "args": ["--root", "${DATA_DIR}/docs"],
            "env": {"TOKEN": "Bearer ${FILES_TOKEN}", "MODE": "read-only"},
        },
    }
    env = {"TOOLS_BIN": "/opt/tools", "DATA_DIR": "/data", "FILES_TOKEN": "s3cr3t"}
    config = server_config(entry, env)
    assert isinstance(config, MCPServerStdio)
    assert config.command == "/opt/tools/files-server"
    assert config.args == ["--root", "/data/docs"]
    assert config.env == {"TOKEN": "Bearer s3cr3t", "MODE": "read-only"}


def test_http_placeholders_in_url_and_headers_expand_from_the_worker_env() -> None:
    entry = {
        "id": "search",
        "streamable_http": {
            "url": "https://${SEARCH_HOST}/mcp",
            "headers": {"Authorization": "Bearer ${SEARCH_TOKEN}"},
        },
    }
    config = server_config(entry, {"SEARCH_HOST": "search.internal", "SEARCH_TOKEN": "t0k"})
    assert isinstance(config, MCPServerHTTP)
    assert config.url == "https://search.internal/mcp"
    assert config.headers == {"Authorization": "Bearer t0k"}
    assert config.streamable


def test_a_missing_placeholder_variable_is_named_with_the_provider_and_field() -> None:
    entry = stdio_entry(args=["--key", "${FILES_API_KEY}"])
    with pytest.raises(
        MissingEnvError, match=r"'files'.*FILES_API_KEY.*stdio\.args\[1\]"
    ) as caught:
        server_config(entry, {})
    assert caught.value.variables == ["FILES_API_KEY"]


def test_required_env_and_required_env_any_are_checked_in_the_worker() -> None:
    with pytest.raises(MissingEnvError, match="FILES_TOKEN"):
        server_config({**stdio_entry(), "required_env": ["FILES_TOKEN"]}, {})
    with pytest.raises(MissingEnvError, match="KEY_A, KEY_B"):
        server_config({**stdio_entry(), "required_env_any": ["KEY_A", "KEY_B"]}, {})
    assert server_config({**stdio_entry(), "required_env_any": ["KEY_A", "KEY_B"]}, {"KEY_B": "x"})


def test_python_as_the_command_runs_the_workers_own_interpreter() -> None:
    config = server_config(stdio_entry(command="python", args=["-m", "agentic.tools.demo_mcp"]), {})
    assert config.command == sys.executable
    assert server_config(stdio_entry(command="node"), {}).command == "node"


def test_a_tools_list_keeps_only_those_tools() -> None:
    config = server_config({**stdio_entry(), "tools": ["lookup_fact"]}, {})
    assert config.tool_filter is not None
    assert config.tool_filter({"name": "lookup_fact"})
    assert not config.tool_filter({"name": "word_count"})
    assert server_config(stdio_entry(), {}).tool_filter is None


def test_a_provider_with_an_empty_tools_list_is_not_started() -> None:
    entries = [
        {**stdio_entry(), "tools": []},
        {"id": "web", "streamable_http": {"url": "http://x"}},
    ]
    configs = server_configs(entries, {})
    assert {i: type(c) for i, c in configs.items()} == {"web": MCPServerHTTP}


def test_an_invalid_entry_is_a_catalog_error_naming_the_provider_and_field() -> None:
    with pytest.raises(CatalogError, match=r"mcp provider 'broken'.*stdio"):
        server_config({"id": "broken", "stdio": {"args": []}}, {})
