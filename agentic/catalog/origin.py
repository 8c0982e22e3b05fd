"""The original tool's catalog fields: legacy keys, fields without effect, "did you mean".

``agentic`` replaces an earlier CrewAI-based orchestration tool whose catalogs users keep.
Before a file's mapping is validated, :func:`adapt` rewrites what that tool wrote:

* legacy keys become ours (``workflow.providers`` -> ``agent_providers``, a task's
  ``provider_id`` -> ``agent_provider_id``, ``huggingface_base_url`` -> ``base_url``);
* ``workflow.process: sequential`` is what agentic does and is dropped; ``hierarchical`` is
  refused until hierarchical crews run;
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

from agentic.contracts import AgentProvider, MCPProvider, TaskConfig, WorkflowBody

Issue = tuple[str, str]
"""``(field, message)``: a warning or a problem, without its file."""

NO_EFFECT: dict[str, dict[str, str]] = {
    "agent": {
        "hardware": "agentic filters by min_vram_gb, not by CPU/GPU/TPU architecture",
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
    "file": {
        "meta": "agentic does not choose a workflow from a goal (the original router's data)",
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
        if out.get("ollama_host") == "workflow":
            out.pop("ollama_host")
            reason = "agentic starts no Ollama server per workflow; OLLAMA_HOST is used"
            message = f"'workflow' accepted and has no effect: {reason}"
            self.warnings.append((prefix + "ollama_host", message))
        if out.get("num_ctx") is not None and out.get("type") != "ollama":
            message = "accepted and has no effect: only 'type: ollama' sets a context window"
            self.warnings.append((prefix + "num_ctx", message))
        return out

    def mcp(self, data: Any, prefix: str = "") -> Any:
        return self.entry("mcp", data, prefix) if isinstance(data, dict) else data

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
        if "process" not in body:
            return
        process = body.pop("process")
        if process == "sequential":
            return  # what agentic does: task_sequence order (or depends_on)
        if process == "hierarchical":
            message = (
                "'hierarchical' is not supported yet: a manager agent delegating at run time "
                "does not run here; remove 'process' (or write 'sequential') to run the tasks "
                "in task_sequence order"
            )
        else:
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
