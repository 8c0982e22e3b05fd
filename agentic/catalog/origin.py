"""The original tool's catalog fields: legacy keys, fields without effect, "did you mean".

``agentic`` replaces an earlier CrewAI-based orchestration tool whose catalogs users keep.
Before a file's mapping is validated, :func:`adapt` rewrites what that tool wrote:

* legacy keys become ours (``workflow.providers`` -> ``agent_providers``, a task's
  ``provider_id`` -> ``agent_provider_id``, ``huggingface_base_url`` -> ``base_url``);
* ``workflow.process`` is agentic's own field (``sequential``, or ``hierarchical`` with a
  ``manager_provider``); another value is refused with the choices;
* fields agentic has no use for (:data:`NO_EFFECT`) are removed, each with a warning naming the
  file and the field: the file loads, and the user learns what is ignored.

Every other unknown field stays an error; :func:`did_you_mean` adds the closest known name.
docs/compatibility.md lists every field and what it does here.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel

from agentic.contracts import AGENT_TYPES, AgentProvider, MCPProvider, TaskConfig, WorkflowBody

Issue = tuple[str, str]
"""``(field, message)``: a warning or a problem, without its file."""

NO_EFFECT: dict[str, dict[str, str]] = {
    "agent": {
        "selfcontained": "agentic does not install, serve or pull Ollama models",
        "general_purpose": "agentic does not suppress generalists in favour of specialists",
        "society_capable": "agentic has no agent societies",
        "harness_profile": "agentic has no agent harnesses",
        "provider_class": "agents are built from their 'type'; custom classes are not loaded",
        "provider_options": "agents are built from their 'type'; custom classes are not loaded",
        "entrypoint": "agentic has no 'deterministic' agents",
        "skills": "agentic has no skills catalog",
        "mcp_providers": "give MCP providers on the workflow or on its tasks",
    },
    "mcp": {
        "match_keywords_only": "agentic does not attach MCP providers by goal keywords",
    },
    "workflow": {
        "skills": "agentic has no skills catalog",
        "rag_sources": "agentic has no RAG sources catalog",
    },
    "task": {
        "skills": "agentic has no skills catalog",
        "rag_sources": "agentic has no RAG sources catalog",
        "rag_query": "agentic has no RAG sources catalog",
    },
}
"""Fields of the original tool accepted and ignored, by where they appear, with the reason."""

ALIASES: dict[str, dict[str, str]] = {
    "agent": {"huggingface_base_url": "base_url"},
    "workflow": {"providers": "agent_providers"},
    "task": {"provider_id": "agent_provider_id"},
}
"""Legacy keys of the original tool and the field each one is, by where they appear."""

PROCESSES = ("sequential", "hierarchical")

ORIGIN_ONLY_TYPES = frozenset({"jetstream", "crewai", "deterministic", "object_detection"})
"""Agent types of the original tool that agentic has no client for."""


class Adapted:
    """A file's mapping as agentic reads it, with the warnings and problems of the rewrite."""

    def __init__(self) -> None:
        self.warnings: list[Issue] = []
        self.problems: list[Issue] = []
        self.renamed: dict[str, str] = {}
        """Our field path -> the legacy path the file wrote, for messages."""

    def shown(self, field: str | None) -> str | None:
        """``field`` (a path in the rewritten mapping) as the file wrote it."""
        for ours, legacy in self.renamed.items():
            if field is not None and (field == ours or field.startswith((ours + ".", ours + "["))):
                return legacy + field[len(ours) :]
        return field

    def entry(self, where: str, data: dict[str, Any], prefix: str) -> dict[str, Any]:
        """``data`` (an entry of kind ``where``) with aliases renamed and ignored fields gone."""
        out = dict(data)
        for old, new in ALIASES.get(where, {}).items():
            if old not in out:
                continue
            if new in out:
                self.problems.append((prefix + old, f"give either {old!r} or {new!r}, not both"))
                out.pop(old)  # one problem, not an "unknown field" too
                continue
            out[new] = out.pop(old)
            self.renamed[prefix + new] = prefix + old
        for name, reason in NO_EFFECT.get(where, {}).items():
            if name in out:
                out.pop(name)
                self.warnings.append((prefix + name, f"accepted and has no effect: {reason}"))
        return out

    def agent(self, data: Any, prefix: str = "") -> Any:
        if not isinstance(data, dict):
            return data
        out = self.entry("agent", data, prefix)
        self._hardware(out, prefix)
        self._type(out, prefix)
        if out.get("ollama_host") == "workflow":
            out.pop("ollama_host")
            reason = "agentic starts no Ollama server per workflow; OLLAMA_HOST is used"
            message = f"'workflow' accepted and has no effect: {reason}"
            self.warnings.append((prefix + "ollama_host", message))
        if out.get("num_ctx") is not None and out.get("type") != "ollama":
            message = "accepted and has no effect: only 'type: ollama' sets a context window"
            self.warnings.append((prefix + "num_ctx", message))
        return out

    def _hardware(self, out: dict[str, Any], prefix: str) -> None:
        """``hardware.min_vram_gb`` (the original tool read it there too) is ``min_vram_gb``."""
        hardware = out.get("hardware")
        if not isinstance(hardware, dict) or "min_vram_gb" not in hardware:
            return
        hardware = dict(hardware)
        vram = hardware.pop("min_vram_gb")
        out["hardware"] = hardware
        if out.get("min_vram_gb") not in (None, vram):
            message = "give either 'min_vram_gb' or 'hardware.min_vram_gb', not both"
            self.problems.append((prefix + "hardware.min_vram_gb", message))
            return
        out["min_vram_gb"] = vram
        self.renamed[prefix + "min_vram_gb"] = prefix + "hardware.min_vram_gb"

    def _type(self, out: dict[str, Any], prefix: str) -> None:
        """An agent ``type`` agentic has no client for: the original tool's own types load
        with a warning (the provider is never offered, a step on it fails); a near miss of
        ours is a typo; anything else is an error naming the known types."""
        kind = out.get("type")
        if not isinstance(kind, str) or kind in AGENT_TYPES:
            return
        known = ", ".join(sorted(AGENT_TYPES))
        if kind in ORIGIN_ONLY_TYPES:
            message = (
                f"{kind!r} accepted and has no effect: agentic has no {kind!r} agents, so the "
                f"planner does not offer this provider and a step on it fails (types: {known})"
            )
            self.warnings.append((prefix + "type", message))
            return
        close = difflib.get_close_matches(kind, sorted(AGENT_TYPES), n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        self.problems.append((prefix + "type", f"unknown type {kind!r} (types: {known}){hint}"))

    def mcp(self, data: Any, prefix: str = "") -> Any:
        if not isinstance(data, dict):
            return data
        out = self.entry("mcp", data, prefix)
        if "ref" in out or "refs" in out:
            self._refs(out, prefix)
        return out

    def _refs(self, out: dict[str, Any], prefix: str) -> None:
        """``ref`` / ``refs`` (CrewAI's MCP strings) -> ``streamable_http`` (+ ``tools``).

        A string is a server URL, ``#tool`` after it naming one tool (CrewAI's notation).
        The strings of one entry must name one server: an MCP provider is one server here.
        CrewAI AMP references (``notion``, ``crewai-amp:notion``) need CrewAI's platform
        and are refused.
        """
        ref, refs = out.pop("ref", None), out.pop("refs", None)
        problems = len(self.problems)
        self._server_of_refs(out, prefix, ref, refs)
        if len(self.problems) > problems and "stdio" not in out:
            # Stands in for the refused strings: one problem, not "exactly one transport" too.
            out["streamable_http"] = {"url": ""}

    def _server_of_refs(self, out: dict[str, Any], prefix: str, ref: Any, refs: Any) -> None:
        strings = ([ref] if ref is not None else []) + (refs if isinstance(refs, list) else [])
        field = prefix + ("ref" if ref is not None else "refs")
        if refs is not None and not isinstance(refs, list):
            self.problems.append((prefix + "refs", "must be a list of MCP server URLs"))
            return
        if "stdio" in out or "streamable_http" in out:
            message = "give either 'ref'/'refs' or a transport ('stdio', 'streamable_http')"
            self.problems.append((field, message))
            return
        servers: dict[str, list[str]] = {}
        for index, text in enumerate(strings):
            where = field if ref is not None and index == 0 else f"{prefix}refs[{index}]"
            if not isinstance(text, str) or not text.strip():
                self.problems.append((where, "must be a non-empty MCP server URL"))
                return
            url, _, tool = text.strip().partition("#")
            if not url.startswith(("https://", "http://")):
                message = (
                    f"{text!r} is a CrewAI AMP reference: agentic does not fetch servers from "
                    "CrewAI's platform; give the server's URL (streamable_http)"
                )
                self.problems.append((where, message))
                return
            servers.setdefault(url, [])
            if tool:
                servers[url].append(tool)
        if len(servers) != 1:
            count = "no server" if not servers else f"{len(servers)} servers"
            message = f"names {count}: an MCP provider is one server; write one entry per server"
            self.problems.append((field, message))
            return
        ((url, tools),) = servers.items()
        out["streamable_http"] = {"url": url}
        if tools and len(tools) == len(strings) and "tools" not in out:
            out["tools"] = tools
        self.renamed[prefix + "streamable_http.url"] = field

    def workflow_file(self, data: dict[str, Any]) -> dict[str, Any]:
        out = self.entry("file", data, "")
        body = out.get("workflow")
        if not isinstance(body, dict):
            return out
        body = self.entry("workflow", body, "workflow.")
        self._process(body)
        for key, adapt in (("agent_providers", self.agent), ("mcp_providers", self.mcp)):
            items = body.get(key)
            where = self.shown(f"workflow.{key}")
            if isinstance(items, list):
                body[key] = [adapt(e, f"{where}[{i}].") for i, e in enumerate(items)]
        tasks = body.get("tasks")
        if isinstance(tasks, list):
            body["tasks"] = [
                self.entry("task", t, f"workflow.tasks[{i}].") if isinstance(t, dict) else t
                for i, t in enumerate(tasks)
            ]
        out["workflow"] = body
        return out

    def _process(self, body: dict[str, Any]) -> None:
        """``process`` is agentic's own field (``sequential`` or ``hierarchical``, which
        needs a ``manager_provider``); another value is refused here, with the choices."""
        if "process" not in body or body["process"] in PROCESSES:
            return
        process = body.pop("process")
        message = f"must be one of {', '.join(PROCESSES)} (got {process!r})"
        self.problems.append(("workflow.process", message))


def adapt(kind: str, data: dict[str, Any]) -> tuple[dict[str, Any], Adapted]:
    """Rewrite one catalog file's mapping of ``kind`` (a catalog sub-directory name).

    Returns:
        The mapping to validate, and the warnings and problems of the rewrite.
    """
    found = Adapted()
    if kind == "agent_providers":
        return found.agent(data), found
    if kind == "mcp_providers":
        return found.mcp(data), found
    if kind != "workflows":  # tools, guardrails: agentic's own kinds, nothing to adapt
        return data, found
    return found.workflow_file(data), found


def did_you_mean(root: type[BaseModel], loc: Sequence[Any]) -> str | None:
    """The known field closest to the unknown one at ``loc`` (its last part), if any is close.

    Args:
        root: The model of the whole file.
        loc: Where the unknown field is (union tags already removed).
    """
    name = loc[-1] if loc else None
    if not isinstance(name, str):
        return None
    known = _fields_at(root, loc[:-1])
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
    return close[0] if close else None


def _fields_at(root: type[BaseModel], path: Iterable[Any]) -> set[str]:
    models: list[type[BaseModel]] = [root]
    for part in path:
        if isinstance(part, int):
            continue
        nested: list[type[BaseModel]] = []
        for model in models:
            field = model.model_fields.get(str(part))
            if field is not None:
                nested += _models_in(field.annotation)
        models = nested
    known: set[str] = set()
    for model in models:
        known |= set(model.model_fields)
        known |= set(ALIASES.get(_WHERE.get(model, ""), {}))
    return known


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is None and not isinstance(annotation, types.UnionType):
        return []
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


_WHERE: dict[type[BaseModel], str] = {
    AgentProvider: "agent",
    MCPProvider: "mcp",
    WorkflowBody: "workflow",
    TaskConfig: "task",
}
