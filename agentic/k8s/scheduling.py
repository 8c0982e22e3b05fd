"""Where a Job's pod may run and what it asks for: provider hints merged over pool settings.

A provider's ``resources``, ``node_selector`` and ``tolerations`` (DESIGN §2) win over the
pool's (``AGENTIC_K8S_POOLS``); ``min_vram_gb`` without explicit provider resources asks for
one ``nvidia.com/gpu`` so GPU steps land on GPU nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentic.errors import ConfigError
from agentic.settings import K8sPool

GPU_RESOURCE = "nvidia.com/gpu"
_PARTS = ("requests", "limits")


@dataclass(frozen=True)
class Scheduling:
    """The scheduling part of a pod spec."""

    resources: dict[str, dict[str, Any]] | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)


def normalize_resources(raw: object, where: str) -> dict[str, dict[str, Any]]:
    """``{requests, limits}`` as Kubernetes wants it, from that form or one flat mapping.

    A flat mapping (``{cpu: 2, memory: 4Gi}``) is used as both requests and limits, which is
    what extended resources such as GPUs require anyway.

    Raises:
        ConfigError: the hint is not a mapping of resource names to quantities.
    """
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{where}: resources must be a non-empty mapping, got {raw!r}")
    parts = raw if set(raw) <= set(_PARTS) else {"requests": raw, "limits": raw}
    out: dict[str, dict[str, Any]] = {}
    for part, quantities in parts.items():
        if not isinstance(quantities, Mapping):
            raise ConfigError(f"{where}: resources.{part} must be a mapping")
        for name, qty in quantities.items():
            if not isinstance(name, str) or isinstance(qty, bool):
                raise ConfigError(f"{where}: resources.{part}.{name}: not a quantity: {qty!r}")
            if not isinstance(qty, str | int | float):
                raise ConfigError(f"{where}: resources.{part}.{name}: not a quantity: {qty!r}")
        out[part] = dict(quantities)
    return out


def _node_selector(raw: object, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise ConfigError(f"{where}: node_selector must map label names to strings")
    return dict(raw)


def _tolerations(raw: object, where: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, Mapping) for t in raw):
        raise ConfigError(f"{where}: tolerations must be a list of mappings")
    return [dict(t) for t in raw]


def scheduling_for(provider: Mapping[str, Any] | None, pool: K8sPool | None) -> Scheduling:
    """Merge a provider's scheduling hints over its pool's settings.

    Args:
        provider: the resolved agent provider entry of a step, or None for worker Jobs.
        pool: the pool's entry of ``AGENTIC_K8S_POOLS``, if any.
    """
    provider = provider or {}
    where = f"agent provider {provider.get('id', '?')!r}"
    resources = None
    if pool is not None and pool.resources is not None:
        resources = normalize_resources(pool.resources, "AGENTIC_K8S_POOLS")
    explicit = provider.get("resources")
    if explicit is not None:
        resources = normalize_resources(explicit, where)
    elif provider.get("min_vram_gb"):
        resources = {part: dict(q) for part, q in (resources or {}).items()}
        resources.setdefault("limits", {}).setdefault(GPU_RESOURCE, 1)
    node_selector = dict(pool.node_selector) if pool is not None else {}
    node_selector.update(_node_selector(provider.get("node_selector"), where))
    tolerations = list(pool.tolerations) if pool is not None else []
    tolerations += _tolerations(provider.get("tolerations"), where)
    return Scheduling(resources=resources, node_selector=node_selector, tolerations=tolerations)
