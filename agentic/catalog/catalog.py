"""The loaded catalog: agent providers, MCP providers and workflows by id."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from agentic.catalog.env import is_available
from agentic.contracts import (
    AGENT_TYPES,
    AgentProvider,
    GuardrailEntry,
    MCPProvider,
    ToolEntry,
    WorkflowDefinition,
)


@dataclass
class Catalog:
    """Everything under the catalog roots, with later roots overriding earlier ids.

    ``sources`` maps ``"<kind>/<id>"`` (``agent_providers/researcher``) to the file that
    defined the entry; use :meth:`source_of`. ``env`` is the environment ``required_env``
    gating checks (``None``: the process environment, read when checked).
    """

    agent_providers: dict[str, AgentProvider] = field(default_factory=dict)
    mcp_providers: dict[str, MCPProvider] = field(default_factory=dict)
    tools: dict[str, ToolEntry] = field(default_factory=dict)
    guardrails: dict[str, GuardrailEntry] = field(default_factory=dict)
    workflows: dict[str, WorkflowDefinition] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    roots: list[str] = field(default_factory=list)
    env: Mapping[str, str] | None = None

    @property
    def environ(self) -> Mapping[str, str]:
        """The environment gating is checked against."""
        return os.environ if self.env is None else self.env

    def add(self, kind: str, entry_id: str, entry: BaseModel, source: str) -> None:
        """Add or override one entry of ``kind`` (a catalog sub-directory name)."""
        entries: dict[str, BaseModel] = getattr(self, kind)
        entries[entry_id] = entry
        self.sources[f"{kind}/{entry_id}"] = source

    def source_of(self, kind: str, entry_id: str) -> str | None:
        """The file that defined ``entry_id`` of ``kind``, if it came from a file."""
        return self.sources.get(f"{kind}/{entry_id}")

    def available_agent_providers(
        self, env: Mapping[str, str] | None = None
    ) -> dict[str, AgentProvider]:
        """Agent providers whose ``required_env`` is set in ``env`` (default: :attr:`environ`)
        and whose ``type`` agentic can run (an original tool's ``deterministic`` agent loads,
        with a warning, and is never offered)."""
        env = self.environ if env is None else env
        return {
            k: p
            for k, p in self.agent_providers.items()
            if p.type in AGENT_TYPES and is_available(p, env)
        }

    def available_mcp_providers(
        self, env: Mapping[str, str] | None = None
    ) -> dict[str, MCPProvider]:
        """MCP providers whose ``required_env`` / ``required_env_any`` is set in ``env``."""
        env = self.environ if env is None else env
        return {k: p for k, p in self.mcp_providers.items() if is_available(p, env)}

    def available_tools(self, env: Mapping[str, str] | None = None) -> dict[str, ToolEntry]:
        """Python tools whose ``required_env`` is set in ``env`` (default: :attr:`environ`)."""
        env = self.environ if env is None else env
        return {k: t for k, t in self.tools.items() if all(env.get(n) for n in t.required_env)}

    def summary(self) -> str:
        """``N agent providers, M MCP providers, K workflows`` (tools and guardrails too,
        when the catalog has any)."""
        kinds: list[tuple[dict[str, Any], str]] = [
            (self.agent_providers, "agent provider"),
            (self.mcp_providers, "MCP provider"),
        ]
        kinds += [(e, n) for e, n in ((self.tools, "tool"), (self.guardrails, "guardrail")) if e]
        kinds.append((self.workflows, "workflow"))
        return ", ".join(counted(len(entries), noun) for entries, noun in kinds)


def counted(count: int, noun: str) -> str:
    """``1 workflow``, ``2 workflows``: a count and its noun, in the number they agree on."""
    return f"{count} {noun}" + ("" if count == 1 else "s")
