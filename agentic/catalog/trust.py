"""Registered definitions: what a process runs comes from its own catalog, never from a message.

A provider carries what an attacker would want to control: a stdio MCP server's command and
arguments, URLs and headers, an MCP sidecar's image (``kubernetes:``), a model's base URL and
the name of the variable holding its API key, scheduling hints. A workflow that arrives over
NATS (a submit) or a step that arrives on the work queue may therefore only *name* providers;
the coordinator resolves names against its catalog and a worker checks that every provider in
a step is, byte for byte, its own catalog's entry of that id.
``AGENTIC_ALLOW_INLINE_PROVIDERS`` lifts both checks on stacks whose every client is trusted
with the workers' environment (DESIGN §9, docs/security.md).

A provider written out in full is accepted when it equals the catalog's entry of its id: a
client that resolved a catalog workflow itself sends nothing the catalog does not hold.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from agentic.catalog.catalog import Catalog
from agentic.catalog.loader import catalog_dirs, load_catalog
from agentic.contracts import (
    AgentProvider,
    MCPProvider,
    StepSpec,
    WorkflowConfig,
    WorkflowDefinition,
)
from agentic.errors import CatalogError
from agentic.settings import Settings

INLINE_HINT = (
    "reference a provider of the coordinator's catalog by id (inline definitions are refused "
    "unless AGENTIC_ALLOW_INLINE_PROVIDERS=true, for stacks whose every client is trusted)"
)
# The fields that make an inline provider dangerous, named in the error.
_RISKY_FIELDS = (
    "stdio",
    "streamable_http",
    "kubernetes",
    "openai_base_url",
    "anthropic_base_url",
    "ollama_host",
    "base_url",
    "api_key_env",
    "required_env",
    "required_env_any",
    "pool",
    "resources",
    "node_selector",
    "tolerations",
)


def entry_dict(entry: AgentProvider | MCPProvider) -> dict[str, Any]:
    """A catalog entry as a spec carries it (``exclude_none``, JSON types)."""
    return entry.model_dump(mode="json", exclude_none=True)


def workflow_problems(
    workflow: WorkflowDefinition | WorkflowConfig, catalog: Catalog, *, prefix: str = "workflow"
) -> list[tuple[str, str]]:
    """Every provider ``workflow`` defines that is not its catalog entry: ``(field, message)``.

    Args:
        workflow: A submitted workflow, as written (ids or inline entries) or resolved.
        catalog: The coordinator's catalog.
        prefix: Where the workflow sits in the request, for field names.
    """
    if isinstance(workflow, WorkflowDefinition):
        body = workflow.workflow
        prefix = f"{prefix}.workflow"
        agents: Sequence[AgentProvider | str] = body.agent_providers
        mcps: Sequence[MCPProvider | str] = body.mcp_providers
    else:
        agents, mcps = workflow.agent_providers, workflow.mcp_providers
    problems = []
    for index, agent in enumerate(agents):
        if not isinstance(agent, str) and not _registered(agent, catalog.agent_providers):
            problems.append((f"{prefix}.agent_providers[{index}]", _message(agent)))
    for index, mcp in enumerate(mcps):
        if not isinstance(mcp, str) and not _registered(mcp, catalog.mcp_providers):
            problems.append((f"{prefix}.mcp_providers[{index}]", _message(mcp)))
    return problems


def check_registered(
    workflow: WorkflowDefinition | WorkflowConfig, catalog: Catalog, *, prefix: str = "workflow"
) -> None:
    """Refuse a workflow that defines a provider its catalog does not hold.

    Raises:
        CatalogError: naming the field of the first inline provider.
    """
    problems = workflow_problems(workflow, catalog, prefix=prefix)
    if problems:
        field, message = problems[0]
        raise CatalogError(message, file="<request>", field=field)


def spec_problem(spec: StepSpec, catalog: Catalog) -> str | None:
    """Why a worker must not run ``spec`` with ``catalog``; None when every provider is its own
    (the step's agent, a hierarchical crew's coworkers, the MCP providers)."""
    coworkers = [member.agent_provider for member in spec.crew.coworkers] if spec.crew else []
    for entry in [spec.agent_provider, *coworkers]:
        agent_id = entry.get("id")
        known = catalog.agent_providers.get(agent_id) if isinstance(agent_id, str) else None
        if known is None:
            return f"agent provider {agent_id!r} is not in this worker's catalog"
        if entry_dict(known) != entry:
            return f"agent provider {agent_id!r} differs from this worker's catalog entry"
    for mcp in spec.mcp_providers:
        found = catalog.mcp_providers.get(mcp.id)
        if found is None:
            return f"MCP provider {mcp.id!r} is not in this worker's catalog"
        if entry_dict(found) != mcp.resolved:
            return f"MCP provider {mcp.id!r} differs from this worker's catalog entry"
    return None


def _registered(entry: AgentProvider | MCPProvider, known: Mapping[str, Any]) -> bool:
    found = known.get(entry.id)
    return found is not None and entry_dict(found) == entry_dict(entry)


def _message(entry: AgentProvider | MCPProvider) -> str:
    kind = "agent provider" if isinstance(entry, AgentProvider) else "MCP provider"
    risky = [name for name in _RISKY_FIELDS if getattr(entry, name, None)]
    carries = f" (it sets {', '.join(risky)})" if risky else ""
    return f"{kind} {entry.id!r} is defined inline{carries}: {INLINE_HINT}"


class CatalogCache:
    """A process's catalog, read again at most every ``ttl_s`` (a burst parses it once).

    Args:
        settings: The catalog roots (missing roots are skipped: a coordinator or worker
            without catalog files still runs, it just knows no provider).
        env: The environment ``required_env`` gating is checked against (``None``: this
            process's).
        ttl_s: How long a loaded catalog is used.
    """

    def __init__(
        self, settings: Settings, *, env: Mapping[str, str] | None = None, ttl_s: float = 2.0
    ) -> None:
        self._settings = settings
        self._env = env
        self._ttl_s = ttl_s
        self._catalog: Catalog | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def get(self) -> Catalog:
        """The catalog (loaded now if stale).

        Raises:
            CatalogError: a catalog file is invalid.
        """
        with self._lock:
            stale = time.monotonic() - self._loaded_at > self._ttl_s
            if self._catalog is None or stale:
                self._catalog = load_catalog(
                    catalog_dirs(self._settings), env=self._env, missing_ok=True
                )
                self._loaded_at = time.monotonic()
            return self._catalog

    async def aget(self) -> Catalog:
        """:meth:`get` from a coroutine: a reload reads files in a thread."""
        with self._lock:
            fresh = self._catalog is not None and time.monotonic() - self._loaded_at <= self._ttl_s
            if fresh:
                assert self._catalog is not None
                return self._catalog
        return await asyncio.to_thread(self.get)
