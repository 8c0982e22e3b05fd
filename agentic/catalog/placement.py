"""Where an MCP provider's server can run: one rule for the planner and for refusing a run.

A step of the ``kubernetes`` backend runs in a Job whose container is agentic's own image,
which has no business holding the commands a catalog wrote for a developer's machine. There,
an MCP server runs only as a sidecar of its own image (the provider's ``kubernetes:``
mapping, :mod:`agentic.k8s.sidecars`), and the step reaches it over streamable HTTP on
localhost. A ``stdio`` provider without that mapping cannot run on ``kubernetes``: the planner
does not offer it (:func:`runs_on`) and a workflow whose step uses it is refused before the run
exists (:func:`check_runs_on`).

Steps on ``nats`` run on workers whose images and pods this process cannot see (a worker pod
may hold the command, or declare the sidecar itself): nothing is refused for them here.
"""

from __future__ import annotations

from agentic.catalog.dag import task_mcp_providers
from agentic.contracts import MCPProvider, WorkflowConfig
from agentic.errors import ConfigError

SIDECAR_BACKENDS = frozenset({"kubernetes"})
"""Backends whose steps start no MCP command of their own: their servers are sidecars."""


def runs_on(provider: MCPProvider, backend: str) -> bool:
    """True when ``provider``'s server can run for a step on ``backend``."""
    return not (
        backend in SIDECAR_BACKENDS and provider.stdio is not None and provider.kubernetes is None
    )


def check_runs_on(wf: WorkflowConfig, backend: str) -> None:
    """Refuse a workflow one of whose steps uses an MCP provider ``backend`` cannot run.

    Providers listed but used by no step, or offering no tool (``tools: []``), are not
    checked: they are never started.

    Raises:
        ConfigError: naming the step, the provider, its command and what to add.
    """
    for sid in wf.task_sequence:
        for mcp in task_mcp_providers(wf, wf.task(sid)):
            if mcp.tools == [] or runs_on(mcp, backend):
                continue
            command = mcp.stdio.command if mcp.stdio is not None else ""
            raise ConfigError(
                f"step {sid!r} uses the stdio MCP provider {mcp.id!r}, which the {backend} "
                f"backend cannot start: its Jobs run agentic's image, not {command!r}. Add "
                "`kubernetes: {image: <an image of the server>, args: [<flags that make it "
                f"serve streamable HTTP>], port: <its port>}}` to MCP provider {mcp.id!r} to "
                "run it as a sidecar of the step's Job (docs/kubernetes.md, \"MCP servers as "
                'sidecars"), or run the workflow on another backend'
            )
