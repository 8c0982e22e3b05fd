"""What a Job's pod may see of Secrets: by role, by pool, by name, never a value.

* A **step Job** (``kubernetes`` backend) gets only the variables its step's agent and MCP
  providers name, each read with ``secretKeyRef`` from ``AGENTIC_K8S_SECRET_NAME``: a step
  that needs ``OPENAI_API_KEY`` never sees the Secret's other keys.
* A **worker Job** (``agentic scaler``) gets its pool's ``secrets`` (``AGENTIC_K8S_POOLS``)
  with ``envFrom`` and its pool's NATS identity: the nkey seed mounted as a file from the
  pool's Secret (``AGENTIC_K8S_WORKER_NATS_SECRET``, or the pool's ``nats_secret``), never
  another pool's.
* Both get the run store's credentials (``AGENTIC_K8S_STORE_SECRET``), a Secret of their own
  that holds no LLM key.

Every reference is optional except the NATS seed: a missing provider key shows up as the
runtime's ``MissingEnvError`` naming the variable, whereas a worker without its identity could
only be refused by nats-server, so its pod waits for the Secret instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agentic.contracts.messages import StepSpec
from agentic.errors import ConfigError
from agentic.settings import Settings

SEED_KEY = "seed.nk"  # the key of every seed Secret (`--from-file=seed.nk=<identity>.nk`)
NATS_SEED_DIR = "/etc/agentic/nats"  # where a pod's own NATS seed is mounted
SEED_FILE_MODE = 0o400  # owner read-only; the pod's fsGroup adds group read for uid 10001
TRUSTED_KEYS_KEY = "trusted-keys"  # key of the step-trust ConfigMap
POOL_PLACEHOLDER = "{pool}"

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclass
class PodCredentials:
    """The Secret and ConfigMap references of one container, and the volumes they need."""

    env: list[dict[str, Any]] = field(default_factory=list)
    env_from: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)


def object_name(name: str, what: str) -> str:
    """``name`` if it can name a Secret or ConfigMap (an RFC 1123 subdomain), else ConfigError."""
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        raise ConfigError(
            f"{what} {name!r} is not a valid Kubernetes object name "
            "(lowercase letters, digits, '-' and '.', at most 253 characters)"
        )
    return name


def _env_from(names: Iterable[str], what: str) -> list[dict[str, Any]]:
    return [
        {"secretRef": {"name": object_name(name, what), "optional": True}}
        for name in dict.fromkeys(names)
    ]


def required_env(spec: StepSpec) -> list[str]:
    """Names of the secret env vars the step's agent and MCP providers need."""
    names = list(spec.agent_provider.get("required_env") or [])
    if spec.agent_provider.get("api_key_env"):
        names.append(spec.agent_provider["api_key_env"])
    for mcp in spec.mcp_providers:
        names += list(mcp.resolved.get("required_env") or [])
        names += list(mcp.resolved.get("required_env_any") or [])
    return sorted(set(names))


def step_credentials(spec: StepSpec, settings: Settings) -> PodCredentials:
    """The provider variables one step needs, key by key, and the store's Secret.

    Raises:
        ConfigError: variables are needed but no Secret is configured, or a name cannot be a
            Secret key.
    """
    creds = PodCredentials()
    if settings.k8s_store_secret:
        creds.env_from += _env_from([settings.k8s_store_secret], "AGENTIC_K8S_STORE_SECRET")
    needed = required_env(spec)
    if not needed:
        return creds
    if not settings.k8s_secret_name:
        raise ConfigError(
            f"step {spec.step_id!r} needs {', '.join(needed)}; Jobs get secrets only from a "
            "Secret: set AGENTIC_K8S_SECRET_NAME to a Secret holding them",
            run_id=spec.run_id,
            step_id=spec.step_id,
        )
    secret = object_name(settings.k8s_secret_name, "AGENTIC_K8S_SECRET_NAME")
    for var in needed:
        if not _SECRET_KEY.match(var):
            raise ConfigError(
                f"step {spec.step_id!r}: {var!r} cannot be the key of a Secret",
                run_id=spec.run_id,
                step_id=spec.step_id,
            )
        ref = {"name": secret, "key": var, "optional": True}
        creds.env.append({"name": var, "valueFrom": {"secretKeyRef": ref}})
    return creds


def worker_nats_secret(pool: str, settings: Settings) -> str | None:
    """The Secret holding ``pool``'s worker seed: the pool's own, else the naming setting."""
    conf = settings.k8s_pools.get(pool)
    if conf is not None and conf.nats_secret:
        return object_name(conf.nats_secret, f"AGENTIC_K8S_POOLS[{pool!r}].nats_secret")
    template = settings.k8s_worker_nats_secret
    if not template:
        return None
    name = template.replace(POOL_PLACEHOLDER, pool)
    if len(name) > 253 or not _SUBDOMAIN.match(name):
        raise ConfigError(
            f"AGENTIC_K8S_WORKER_NATS_SECRET makes {name!r} the Secret of pool {pool!r}, a "
            f"name Kubernetes refuses: set nats_secret for {pool!r} in AGENTIC_K8S_POOLS"
        )
    return name


def worker_credentials(pool: str, settings: Settings) -> PodCredentials:
    """The pool's Secrets, its NATS seed file, the step-trust ConfigMap and the store's Secret.

    Raises:
        ConfigError: a Secret or ConfigMap name Kubernetes would refuse.
    """
    conf = settings.k8s_pools.get(pool)
    secrets = conf.secrets if conf is not None else []
    creds = PodCredentials(env_from=_env_from(secrets, f"AGENTIC_K8S_POOLS[{pool!r}].secrets"))
    if settings.k8s_store_secret:
        creds.env_from += _env_from([settings.k8s_store_secret], "AGENTIC_K8S_STORE_SECRET")
    seed_secret = worker_nats_secret(pool, settings)
    if seed_secret:
        creds.volumes.append(
            {
                "name": "nats-credential",
                "secret": {
                    "secretName": seed_secret,
                    "items": [{"key": SEED_KEY, "path": SEED_KEY}],
                    "defaultMode": SEED_FILE_MODE,
                },
            }
        )
        creds.mounts.append(
            {"name": "nats-credential", "mountPath": NATS_SEED_DIR, "readOnly": True}
        )
        creds.env.append({"name": "AGENTIC_NATS_NKEY_SEED_FILE", "value": nats_seed_file()})
    if settings.k8s_step_trust_configmap:
        trust = object_name(settings.k8s_step_trust_configmap, "AGENTIC_K8S_STEP_TRUST_CONFIGMAP")
        ref = {"name": trust, "key": TRUSTED_KEYS_KEY, "optional": True}
        creds.env.append(
            {"name": "AGENTIC_STEP_TRUSTED_KEYS", "valueFrom": {"configMapKeyRef": ref}}
        )
    return creds


def nats_seed_file() -> str:
    """Where a pod finds its own NATS seed (``AGENTIC_NATS_NKEY_SEED_FILE``)."""
    return f"{NATS_SEED_DIR}/{SEED_KEY}"
