"""Workflow resolution: a workflow file plus the catalog -> a self-contained WorkflowConfig.

Agent and MCP providers may be listed by catalog id or written inline. A task may also name
a catalog agent provider that the workflow does not list: it is pulled in, since there is
nothing else it could mean. A task's MCP providers must be among the workflow's, because
"unset" means "all of the workflow's" and silently growing that list would change other tasks.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from agentic.catalog.catalog import Catalog
from agentic.catalog.dag import Issue, task_mcp_providers, workflow_issues
from agentic.catalog.env import require_env
from agentic.catalog.files import parse_entry, pool_issue, read_yaml
from agentic.contracts import (
    AgentProvider,
    HierarchicalCrew,
    MCPProvider,
    RegisteredGuardrail,
    WorkflowBody,
    WorkflowConfig,
    WorkflowDefinition,
)
from agentic.errors import CatalogError
from agentic.hierarchical import CREW_STEP, coworkers, hierarchical_workflow

P = TypeVar("P", AgentProvider, MCPProvider)


def resolve_workflow(
    definition: WorkflowDefinition,
    catalog: Catalog,
    *,
    source: str | None = None,
    check_env: bool = True,
) -> WorkflowConfig:
    """Embed every provider a workflow uses and check its step graph.

    Args:
        definition: The workflow as its file says it.
        catalog: Where provider ids are looked up.
        source: The workflow's file, named in errors.
        check_env: Refuse providers whose ``required_env`` is missing from ``catalog.environ``.

    Raises:
        CatalogError: an unknown id, a cycle, a bad sequence (names file and field).
        MissingEnvError: a provider a step uses needs variables that are not set.
    """
    wf, issues = resolution_issues(definition, catalog)
    if issues:
        field, message = issues[0]
        raise CatalogError(message, file=source, field=field)
    if check_env:
        require_workflow_env(wf, catalog.environ)
    return wf


def load_workflow(ref_or_path: str, catalog: Catalog, *, check_env: bool = True) -> WorkflowConfig:
    """Resolve a workflow given by catalog name (``demo``) or YAML path (``x/demo.yaml``).

    Raises:
        CatalogError: unknown name, unreadable or invalid file, unresolvable workflow.
        MissingEnvError: see :func:`resolve_workflow`.
    """
    if _looks_like_path(ref_or_path):
        path = Path(ref_or_path)
        if not path.is_file():
            raise CatalogError("no such workflow file", file=ref_or_path)
        definition, problems = parse_entry("workflows", read_yaml(path, ref_or_path), ref_or_path)
        if problems:
            raise problems[0].to_error()
        assert isinstance(definition, WorkflowDefinition)
        return resolve_workflow(definition, catalog, source=ref_or_path, check_env=check_env)
    found = catalog.workflows.get(ref_or_path)
    if found is None:
        where = catalog.roots[0] + "/workflows" if catalog.roots else "<catalog>"
        raise CatalogError(
            f"unknown workflow {ref_or_path!r}{_known(catalog.workflows)}", file=where
        )
    source = catalog.source_of("workflows", ref_or_path)
    return resolve_workflow(found, catalog, source=source, check_env=check_env)


def require_workflow_env(wf: WorkflowConfig, env: Mapping[str, str] | None = None) -> None:
    """Refuse a workflow whose steps use a provider with missing variables.

    Providers listed but used by no step are not checked.

    Raises:
        MissingEnvError: naming the provider, the step and the variables.
    """
    env = os.environ if env is None else env
    for sid in wf.task_sequence:
        task = wf.task(sid)
        for provider_id in wf.provider_chain(sid):  # a fallback may run the step too
            require_env(wf.provider(provider_id), env, used_by=sid)
        for mcp in task_mcp_providers(wf, task):
            require_env(mcp, env, used_by=sid)
    for coworker in wf.crew.coworkers if wf.crew is not None else []:  # the crew step's too
        require_env(wf.provider(coworker), env, used_by=CREW_STEP)


def resolution_issues(
    definition: WorkflowDefinition,
    catalog: Catalog,
    *,
    broken: Mapping[str, Collection[str]] | None = None,
) -> tuple[WorkflowConfig, list[Issue]]:
    """Resolve without raising: the (possibly incomplete) config and every problem.

    Args:
        broken: Ids per kind whose own files are invalid; references to them are not
            reported again (the file's problem already is).
    """
    broken = broken or {}
    body = definition.workflow
    issues: list[Issue] = []
    hidden_agents = set(broken.get("agent_providers", ()))
    hidden_mcps = set(broken.get("mcp_providers", ()))
    agents = _pick(body.agent_providers, catalog.agent_providers, hidden_agents, issues)
    mcps = _pick(body.mcp_providers, catalog.mcp_providers, hidden_mcps, issues, mcp=True)
    hidden_agents |= {e for e in body.agent_providers if isinstance(e, str) and e not in agents}
    hidden_mcps |= {e for e in body.mcp_providers if isinstance(e, str) and e not in mcps}
    for task in body.tasks:
        found = catalog.agent_providers.get(task.agent_provider_id)
        if task.agent_provider_id not in agents and found is not None:
            agents[found.id] = found
    if body.review is not None:  # the reviewer, like a task's provider
        found = catalog.agent_providers.get(body.review.provider)
        if body.review.provider not in agents and found is not None:
            agents[found.id] = found
    if body.manager_provider is not None:  # a hierarchical crew's manager, likewise
        found = catalog.agent_providers.get(body.manager_provider)
        if body.manager_provider not in agents and found is not None:
            agents[found.id] = found
    for provider in list(agents.values()):  # fallbacks: one level, as provider_chain reads
        for fallback in provider.fallback:
            found = catalog.agent_providers.get(fallback)
            if fallback not in agents and found is not None:
                agents[found.id] = found
    wf = _build(body, agents, mcps)
    quiet = _quiet_fields(body, hidden_agents, hidden_mcps)
    issues += [issue for issue in workflow_issues(wf) if issue[0] not in quiet]
    issues += code_issues(wf, catalog, broken=broken)
    return wf, issues


def code_issues(
    wf: WorkflowConfig | WorkflowBody,
    catalog: Catalog,
    *,
    broken: Mapping[str, Collection[str]] | None = None,
) -> list[Issue]:
    """Tools and registered guardrails a workflow names that ``catalog`` does not hold.

    Only ids are checked: the code they name is imported where a step runs, from that
    process's own catalog (docs/runtime.md, "Python tools").
    """
    broken = broken or {}
    issues: list[Issue] = []

    def check(field: str, kind: str, entry_id: str) -> None:
        known = getattr(catalog, kind)
        if entry_id not in known and entry_id not in broken.get(kind, ()):
            what = "tool" if kind == "tools" else "guardrail"
            issues.append((field, f"unknown {what} {entry_id!r}{_closest(entry_id, known)}"))

    for index, tool in enumerate(wf.tools):
        check(f"workflow.tools[{index}]", "tools", tool)
    for i, task in enumerate(wf.tasks):
        for j, tool in enumerate(task.tools or []):
            check(f"workflow.tasks[{i}].tools[{j}]", "tools", tool)
        if isinstance(task.guardrail, RegisteredGuardrail):
            check(
                f"workflow.tasks[{i}].guardrail.registered", "guardrails", task.guardrail.registered
            )
    return issues


def _closest(name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else _known(known)


def _build(body: WorkflowBody, agents: dict[str, AgentProvider], mcps: dict[str, MCPProvider]):
    sequence = body.task_sequence
    if sequence is None:  # duplicate task ids are reported once, as such, not here again
        sequence = list(dict.fromkeys(t.id for t in body.tasks))
    wf = WorkflowConfig(
        name=body.name,
        topic=body.topic,
        description=body.description,
        agent_providers=list(agents.values()),
        mcp_providers=list(mcps.values()),
        tools=body.tools,
        tasks=body.tasks,
        task_sequence=sequence,
        max_cost_usd=body.max_cost_usd,
        review=body.review,
    )
    if body.manager_provider is None:
        return wf
    listed = [entry if isinstance(entry, str) else entry.id for entry in body.agent_providers]
    crew = HierarchicalCrew(
        manager_provider=body.manager_provider,
        coworkers=[c for c in coworkers(listed, body.tasks, body.manager_provider) if c in agents],
        tasks=body.tasks,
        task_sequence=sequence,
    )
    return hierarchical_workflow(wf, crew)


def _pick(
    entries: Sequence[P | str],
    known: Mapping[str, P],
    broken: set[str],
    issues: list[Issue],
    *,
    mcp: bool = False,
) -> dict[str, P]:
    """Providers listed by a workflow, by id -> model; unknown ids become issues.

    Ids in ``broken`` are skipped silently: their own file's problem is reported.
    """
    kind, what = ("mcp_providers", "MCP provider") if mcp else ("agent_providers", "agent provider")
    out: dict[str, P] = {}
    for index, entry in enumerate(entries):
        field = f"workflow.{kind}[{index}]"
        if isinstance(entry, str):
            if entry not in known:
                if entry not in broken:
                    issues.append((field, f"unknown {what} {entry!r}{_known(known)}"))
                continue
            entry = known[entry]
        elif isinstance(entry, AgentProvider):
            pool = pool_issue(entry.pool, f"{field}.pool")
            if pool is not None:
                issues.append(pool)
        if entry.id in out:
            issues.append((field, f"duplicate {what} id {entry.id!r}"))
            continue
        out[entry.id] = entry
    return out


def _quiet_fields(body: WorkflowBody, agents: set[str], mcps: set[str]) -> set[str]:
    """Task fields naming providers whose problem is already reported elsewhere."""
    quiet = set()
    if body.manager_provider in agents:
        quiet.add("workflow.manager_provider")
    for i, task in enumerate(body.tasks):
        if task.agent_provider_id in agents:
            quiet.add(f"workflow.tasks[{i}].agent_provider_id")
        for j, mid in enumerate(task.mcp_providers or []):
            if mid in mcps:
                quiet.add(f"workflow.tasks[{i}].mcp_providers[{j}]")
    return quiet


def _known(known: Collection[str]) -> str:
    if not known:
        return " (the catalog has none)"
    names = sorted(known)
    shown = ", ".join(names[:12]) + (", …" if len(names) > 12 else "")
    return f" (known: {shown})"


def _looks_like_path(ref: str) -> bool:
    return ref.endswith((".yaml", ".yml")) or "/" in ref or os.sep in ref
