"""MCP servers as native sidecars of a step Job's pod.

An MCP provider with a ``kubernetes:`` mapping (:class:`~agentic.contracts.KubernetesSidecar`)
runs, in every step Job whose step uses it, as an init container with ``restartPolicy:
Always`` (a native sidecar, Kubernetes >= 1.29): the kubelet starts it before the step's
container, keeps it running while the step runs and stops it once the step's container has
exited, so the Job completes as a one-container Job does. The step's container gets
:data:`~agentic.names.MCP_SIDECARS_ENV` (``{provider id:
"http://127.0.0.1:<port><path>"}``); its runtime waits until each sidecar accepts
connections and connects there over streamable HTTP instead of starting the provider's stdio
command (:mod:`agentic.runtime.mcp`).

No startup probe: the kubelet probes the pod's IP, and an MCP server usually listens on
localhost only (as it should: nothing outside the pod has any business with it), so a probe
would never pass. The step's own wait takes its place.

A sidecar sees Secrets as the step's container does, by reference only: each variable its
provider names (``required_env``, ``required_env_any``) and each ``${VAR}`` of its
``kubernetes.env`` is a ``secretKeyRef`` to ``AGENTIC_K8S_SECRET_NAME`` (key ``VAR``,
optional). A value that mixes text and placeholders (``Bearer ${TOKEN}``) becomes Kubernetes'
own dependent variable, ``Bearer $(TOKEN)``, expanded by the kubelet; every other ``$`` is
escaped. It runs under the pod's non-root security context with a read-only root
filesystem, its own writable ``/tmp`` (also its ``HOME``) and no service account token.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from agentic.catalog.placement import runs_on
from agentic.contracts import KubernetesSidecar, MCPProvider, StepSpec, first_error
from agentic.errors import ConfigError
from agentic.k8s.credentials import object_name
from agentic.names import MCP_SIDECARS_ENV

BACKEND = "kubernetes"  # the backend whose step Jobs these are
SIDECAR_HOME = "/tmp"

_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def sidecars(spec: StepSpec) -> list[MCPProvider]:
    """The step's MCP providers that run as sidecars (``kubernetes:`` set, tools offered).

    Raises:
        ConfigError: the step uses a stdio provider without a sidecar image (refused before
            the run when it is prepared; this guards specs that did not come that way).
    """
    found = []
    for entry in spec.mcp_providers:
        resolved = entry.resolved
        if resolved.get("tools") == [] or not ({"stdio", "kubernetes"} & set(resolved)):
            continue  # never started, or a URL the step reaches itself
        try:
            provider = MCPProvider.model_validate(resolved)
        except ValidationError as exc:
            raise ConfigError(
                f"step {spec.step_id!r}: MCP provider {entry.id!r}: {first_error(exc)}",
                run_id=spec.run_id,
                step_id=spec.step_id,
            ) from exc
        if not runs_on(provider, BACKEND):
            raise ConfigError(
                f"step {spec.step_id!r}: the stdio MCP provider {provider.id!r} has no "
                "kubernetes.image: a step Job cannot start its command (docs/kubernetes.md, "
                '"MCP servers as sidecars")',
                run_id=spec.run_id,
                step_id=spec.step_id,
            )
        if provider.kubernetes is not None:
            found.append(provider)
    return found


def sidecar_env(providers: list[MCPProvider]) -> dict[str, str]:
    """The step container's plain variable naming where each sidecar listens (none: {})."""
    if not providers:
        return {}
    urls = {p.id: _sidecar(p).url for p in providers}
    return {MCP_SIDECARS_ENV: json.dumps(urls, sort_keys=True)}


def sidecar_containers(
    providers: list[MCPProvider], *, secret_name: str | None, security: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The init containers (native sidecars) of ``providers`` and the volumes they need.

    Args:
        providers: The step's sidecar providers, in the step's order (they start in it).
        secret_name: ``AGENTIC_K8S_SECRET_NAME``: where placeholders are read from.
        security: The container security context of every agentic container.

    Raises:
        ConfigError: two sidecars share a port, or placeholders or required variables are
            used while no Secret is configured.
    """
    containers: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = []
    ports: dict[int, str] = {}
    for index, provider in enumerate(providers):
        sidecar = _sidecar(provider)
        if sidecar.port in ports:
            raise ConfigError(
                f"MCP providers {ports[sidecar.port]!r} and {provider.id!r} both listen on "
                f"port {sidecar.port}: sidecars of one pod share its network; give one "
                "another kubernetes.port"
            )
        ports[sidecar.port] = provider.id
        name = container_name(provider.id, index)
        tmp = f"{name}-tmp"
        container: dict[str, Any] = {
            "name": name,
            "image": sidecar.image,
            "imagePullPolicy": "IfNotPresent",
            "restartPolicy": "Always",  # native sidecar: runs beside the step, stops after it
            "ports": [{"containerPort": sidecar.port, "protocol": "TCP"}],
            "env": _env(provider, sidecar, secret_name),
            "securityContext": copy.deepcopy(dict(security)),
            "volumeMounts": [{"name": tmp, "mountPath": "/tmp"}],
        }
        if sidecar.command:
            container["command"] = list(sidecar.command)
        if sidecar.args:
            container["args"] = list(sidecar.args)
        if sidecar.resources:
            container["resources"] = copy.deepcopy(sidecar.resources)
        containers.append(container)
        volumes.append({"name": tmp, "emptyDir": {}})
    return containers, volumes


def container_name(provider_id: str, index: int) -> str:
    """``mcp-<index>-<id>``: a DNS label unique in the pod (the index keeps ``A`` and ``a``
    apart), cut so that ``<name>-tmp`` still fits 63 characters."""
    chunk = re.sub(r"-+", "-", _NOT_DNS.sub("-", provider_id.lower())).strip("-")
    return f"mcp-{index}-{chunk}"[:55].rstrip("-")


def _sidecar(provider: MCPProvider) -> KubernetesSidecar:
    assert provider.kubernetes is not None  # sidecars() keeps only those
    return provider.kubernetes


def _env(
    provider: MCPProvider, sidecar: KubernetesSidecar, secret_name: str | None
) -> list[dict[str, Any]]:
    """Secret variables first (by reference), then the plain and dependent ones, so that
    every ``$(VAR)`` names a variable defined before it (as Kubernetes requires)."""
    wanted = _secret_variables(provider, sidecar)
    if wanted and not secret_name:
        raise ConfigError(
            f"MCP provider {provider.id!r} runs as a sidecar that needs {', '.join(wanted)}; "
            "Jobs get secrets only from a Secret: set AGENTIC_K8S_SECRET_NAME to a Secret "
            "holding them"
        )
    exact = {
        name: match.group(1)
        for name, value in sidecar.env.items()
        if (match := _PLACEHOLDER.fullmatch(value))
    }
    env: list[dict[str, Any]] = []
    if "HOME" not in sidecar.env:
        env.append({"name": "HOME", "value": SIDECAR_HOME})
    defined = set()
    for var in wanted:
        if var not in sidecar.env:
            env.append(_secret_ref(var, var, secret_name))
            defined.add(var)
    for name, key in exact.items():
        env.append(_secret_ref(name, key, secret_name))
        if name == key:
            defined.add(name)
    for name, value in sidecar.env.items():
        if name in exact:
            continue
        redefined = [v for v in _PLACEHOLDER.findall(value) if v not in defined]
        if redefined:
            raise ConfigError(
                f"MCP provider {provider.id!r}: kubernetes.env.{name} uses "
                f"${{{redefined[0]}}}, which kubernetes.env itself sets to something else: "
                "read the Secret's key into a variable of its own"
            )
        env.append({"name": name, "value": _dependent(value)})
    return env


def _secret_variables(provider: MCPProvider, sidecar: KubernetesSidecar) -> list[str]:
    """What the server reads from the Secret: its provider's variables and placeholders."""
    wanted = [*provider.required_env, *provider.required_env_any]
    for value in sidecar.env.values():
        wanted += _PLACEHOLDER.findall(value)
    return list(dict.fromkeys(wanted))


def _dependent(value: str) -> str:
    """``${VAR}`` as Kubernetes' ``$(VAR)``; every other ``$`` escaped (``$$``)."""
    out, last = [], 0
    for match in _PLACEHOLDER.finditer(value):
        out += [value[last : match.start()].replace("$", "$$"), f"$({match.group(1)})"]
        last = match.end()
    out.append(value[last:].replace("$", "$$"))
    return "".join(out)


def _secret_ref(name: str, key: str, secret_name: str | None) -> dict[str, Any]:
    assert secret_name is not None
    secret = object_name(secret_name, "AGENTIC_K8S_SECRET_NAME")
    ref = {"name": secret, "key": key, "optional": True}
    return {"name": name, "valueFrom": {"secretKeyRef": ref}}
