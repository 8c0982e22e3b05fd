"""MCP providers -> CrewAI MCP server configurations.

A step's spec carries each MCP provider entry as the catalog wrote it, ``${VAR}``
placeholders kept. Here, in the worker, the placeholders of ``stdio.command``,
``stdio.args``, ``stdio.env``, ``streamable_http.url`` and ``streamable_http.headers`` are
expanded from the worker's environment (a missing variable is a fatal step error naming it),
and the entry becomes one of CrewAI's own MCP configurations (``MCPServerStdio`` or
``MCPServerHTTP``), handed to ``Agent(mcps=...)``: CrewAI discovers the tools when the task
starts and calls each through a fresh MCP client. In a pod that runs a provider's server as a
sidecar (``kubernetes:``, :mod:`agentic.k8s.sidecars`), ``AGENTIC_MCP_SIDECARS`` names its
URL on localhost; the step waits until it listens (:func:`wait_for_sidecar`) and connects
there over streamable HTTP, whatever its transport (an HTTP provider's headers are still
sent), instead of starting its command. The agent sees each tool as
``<provider id>_<tool>`` (:func:`agentic.runtime.agents.offered_tool_name`).

The command of a stdio server comes only from its catalog entry, never from model output.
A command written as ``python`` or ``python3`` runs the worker's own interpreter
(``sys.executable``): a Python MCP server is usually installed next to agentic, which a
``python`` found on ``PATH`` might not see. Any other command is looked up on ``PATH``.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from crewai.mcp import MCPServerHTTP, MCPServerStdio, create_static_tool_filter
from crewai.utilities.string_utils import sanitize_tool_name
from pydantic import ValidationError

from agentic.contracts import MCPProvider, ResolvedMCP, first_error
from agentic.errors import CatalogError, ConfigError, MissingEnvError, RetryableStepFailure
from agentic.names import MCP_SIDECARS_ENV

MCPServerConfig = MCPServerStdio | MCPServerHTTP

SIDECAR_WAIT_S = 120.0  # how long a step waits for its MCP sidecars to listen
SIDECAR_POLL_S = 0.1

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_OWN_PYTHON = frozenset({"python", "python3"})


def expand_env(
    value: str,
    env: Mapping[str, str],
    *,
    entry_id: str,
    field: str,
    kind: str = "MCP provider",
) -> str:
    """Replace every ``${VAR}`` in ``value`` with ``env[VAR]``.

    Raises:
        MissingEnvError: a placeholder names a variable that is not set; the message names
            the variable, the entry (``kind`` and id) and the field.
    """

    def _sub(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise MissingEnvError(
                f"{kind} {entry_id!r}: environment variable {name} is not set (used in {field})",
                entry_id=entry_id,
                variables=[name],
            )
        return env[name]

    return _PLACEHOLDER.sub(_sub, value)


def check_required_env(provider: MCPProvider, env: Mapping[str, str]) -> None:
    """Fail clearly when the worker lacks the variables the entry declares it needs."""
    MissingEnvError.check("MCP provider", provider.id, provider.required_env, env)
    any_of = provider.required_env_any
    if any_of and not any(env.get(name) for name in any_of):
        raise MissingEnvError(
            f"MCP provider {provider.id!r} needs one of these environment variables: "
            + ", ".join(any_of),
            entry_id=provider.id,
            variables=list(any_of),
        )


def server_config(entry: Mapping[str, Any], env: Mapping[str, str]) -> MCPServerConfig:
    """One resolved MCP provider entry -> CrewAI's MCP configuration, placeholders expanded.

    Raises:
        CatalogError: the entry is not a valid MCP provider.
        MissingEnvError: a required or referenced variable is not set.
    """
    return _server_config(_provider(entry), env)


def _server_config(provider: MCPProvider, env: Mapping[str, str]) -> MCPServerConfig:
    check_required_env(provider, env)

    def expand(value: str, field: str) -> str:
        return expand_env(value, env, entry_id=provider.id, field=field)

    tool_filter = _tool_filter(provider.tools)
    sidecar = sidecar_urls(env).get(provider.id) if provider.kubernetes is not None else None
    if sidecar is not None:  # this pod runs the server beside the step: connect to it
        wait_for_sidecar(provider.id, sidecar)
        http = provider.streamable_http
        headers = http.headers if http is not None else {}
        return MCPServerHTTP(
            url=sidecar,
            headers={k: expand(v, f"streamable_http.headers.{k}") for k, v in headers.items()}
            or None,
            streamable=True,
            tool_filter=tool_filter,
        )
    if provider.stdio is not None:
        stdio = provider.stdio
        command = expand(stdio.command, "stdio.command")
        return MCPServerStdio(
            command=sys.executable if command in _OWN_PYTHON else command,
            args=[expand(a, f"stdio.args[{i}]") for i, a in enumerate(stdio.args)],
            env={k: expand(v, f"stdio.env.{k}") for k, v in stdio.env.items()} or None,
            tool_filter=tool_filter,
        )
    http = provider.streamable_http
    assert http is not None  # the model guarantees exactly one transport
    return MCPServerHTTP(
        url=expand(http.url, "streamable_http.url"),
        headers={k: expand(v, f"streamable_http.headers.{k}") for k, v in http.headers.items()}
        or None,
        streamable=True,
        tool_filter=tool_filter,
    )


def sidecar_urls(env: Mapping[str, str]) -> dict[str, str]:
    """``{provider id: URL}`` from ``AGENTIC_MCP_SIDECARS`` in ``env`` (empty when unset).

    Raises:
        ConfigError: the variable is not a JSON object of ``http://127.0.0.1:`` URLs.
    """
    raw = env.get(MCP_SIDECARS_ENV)
    if not raw:
        return {}
    try:
        urls = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{MCP_SIDECARS_ENV} is not JSON: {exc}") from exc
    if not isinstance(urls, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.startswith("http://127.0.0.1:")
        for k, v in urls.items()
    ):
        raise ConfigError(
            f"{MCP_SIDECARS_ENV} must map MCP provider ids to http://127.0.0.1:<port>/… URLs"
        )
    return urls


def wait_for_sidecar(provider_id: str, url: str, timeout_s: float = SIDECAR_WAIT_S) -> None:
    """Return once the sidecar at ``url`` accepts TCP connections.

    The kubelet starts a native sidecar before the step's container but cannot tell when a
    server listening on localhost is ready (its probes reach the pod's IP), so the step waits.

    Raises:
        RetryableStepFailure: it did not listen within ``timeout_s`` (a slow image may do
            better on the next attempt; the sidecar's log says why it did not).
    """
    parts = urlsplit(url)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise RetryableStepFailure(
                    f"MCP provider {provider_id!r}: its sidecar did not listen on {url} within "
                    f"{timeout_s:g} s; its container's log (kubectl logs <pod> -c "
                    "mcp-<n>-<provider>) says why",
                    error_type="SidecarNotListening",
                ) from None
            time.sleep(SIDECAR_POLL_S)


def server_configs(
    entries: Iterable[ResolvedMCP | Mapping[str, Any]], env: Mapping[str, str]
) -> dict[str, MCPServerConfig]:
    """Every MCP provider of a step -> ``{provider id: CrewAI MCP configuration}``, in order.

    A provider whose ``tools`` list is empty offers nothing and is not started.
    """
    configs: dict[str, MCPServerConfig] = {}
    for entry in entries:
        resolved = entry.resolved if isinstance(entry, ResolvedMCP) else entry
        if resolved.get("tools") == []:
            continue
        provider = _provider(resolved)
        configs[provider.id] = _server_config(provider, env)
    return configs


def _provider(entry: Mapping[str, Any]) -> MCPProvider:
    try:
        return MCPProvider.model_validate(dict(entry))
    except ValidationError as exc:
        name = entry.get("id", "<unnamed>")
        raise CatalogError(first_error(exc), file=f"mcp provider {name!r}") from exc


def _tool_filter(tools: list[str] | None) -> Any:
    if tools is None:
        return None
    # CrewAI compares the filter with its sanitized tool names; accept both spellings.
    allowed = sorted({*tools, *(sanitize_tool_name(t) for t in tools)})
    return create_static_tool_filter(allowed_tool_names=allowed)
