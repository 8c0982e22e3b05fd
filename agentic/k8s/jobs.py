"""batch/v1 Job manifests for step Jobs and worker Jobs, as plain dicts.

A step Job runs ``agentic execute-step <spec_url>`` for one attempt of one step (the
``kubernetes`` backend); a worker Job runs ``agentic worker --burst --pool <pool>`` (started by
``agentic scaler``; KEDA's ScaledJob in ``deploy/`` runs the same command). Both:

* have deterministic names (a retried step gets a new name: the attempt is part of it),
* carry ``backoffLimit: 0`` because the coordinator owns retries,
* see Secrets only by name, and only those of their role (:mod:`agentic.k8s.credentials`):
  a step Job the variables its providers name, a worker Job its pool's Secrets and NATS seed;
  no value of a ``required_env`` variable, seed, NATS password or token is ever written into a
  manifest,
* reach a file run store only through the PVC ``AGENTIC_K8S_STORE_PVC`` (an ``s3://`` store
  needs no volume: its credentials come from ``AGENTIC_K8S_STORE_SECRET``),
* take their image from ``AGENTIC_K8S_IMAGE`` as it is: a tag or a digest
  (``registry/agentic-worker@sha256:…``),
* run as uid 10001 with a read-only root filesystem, no privilege escalation, no
  capabilities and the RuntimeDefault seccomp profile; ``/tmp`` and ``$HOME`` are emptyDirs.

A step Job whose step uses MCP providers with a ``kubernetes:`` image also runs each of them
as a native sidecar (:mod:`agentic.k8s.sidecars`); worker Jobs get none (docs/kubernetes.md).
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from agentic.contracts.messages import StepSpec
from agentic.errors import ConfigError
from agentic.ids import check_id
from agentic.k8s.credentials import PodCredentials, step_credentials, worker_credentials
from agentic.k8s.scheduling import Scheduling, scheduling_for
from agentic.k8s.sidecars import sidecar_containers, sidecar_env, sidecars
from agentic.settings import Settings

LABEL_RUN_ID = "agentic/run-id"
LABEL_STEP_ID = "agentic/step-id"
LABEL_ATTEMPT = "agentic/attempt"
LABEL_POOL = "agentic/pool"
LABEL_COMPONENT = "app.kubernetes.io/component"
COMMON_LABELS = {"app.kubernetes.io/name": "agentic", "app.kubernetes.io/part-of": "agentic"}

MAX_NAME = 63  # Job names become the pods' `job-name` label value: 63 characters at most.
USER_ID = 10001  # the non-root user of services/*/Dockerfile
HOME = "/home/agentic"
CONTAINER = "agentic"
SCRAPE_PORT = "prometheus.io/port"

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LOCAL_PROTOCOLS = {"", "file", "local"}

# Settings a burst worker needs, passed as plain values; none of them can hold a secret.
_WORKER_SETTINGS = (
    "default_pool",
    "log_level",
    "log_format",
    "step_ack_wait_s",
    "step_max_deliver",
    "step_max_ack_pending",
    "max_message_bytes",
    "max_document_bytes",
    "crewai_telemetry",
    # A worker must refuse (or accept) inline providers as its coordinator does.
    "allow_inline_providers",
)


def _digest(*parts: object) -> str:
    return hashlib.sha256("\0".join(str(p) for p in parts).encode()).hexdigest()


def _dns_chunk(raw: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]+", "-", raw.lower())).strip("-")


def step_job_name(run_id: str, step_id: str, attempt: int) -> str:
    """``agentic-<run>-<step>-a<attempt>-<hash>``: a valid Job name of at most 63 characters.

    Ids are lowercased and cut to fit; the hash of the exact ids and attempt keeps names of
    different steps (``Step`` vs ``step``, long ids sharing a prefix) and attempts apart.
    """
    check_id(run_id, "run id")
    check_id(step_id, "step id")
    if int(attempt) < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    tail = f"-a{int(attempt)}-{_digest(run_id, step_id, int(attempt))[:8]}"
    room = MAX_NAME - len("agentic-") - len(tail)
    body = _dns_chunk(f"{run_id}-{step_id}")[:room].rstrip("-")
    return f"agentic-{body}{tail}" if body else f"agentic{tail}"


def worker_job_name(pool: str, token: str) -> str:
    """``agentic-worker-<pool>-<token>`` cut to 63 characters; ``token`` makes it unique."""
    check_id(pool, "pool")
    token = _dns_chunk(token)[:16]
    if not token:
        raise ValueError("worker Job name token must contain letters or digits")
    room = MAX_NAME - len("agentic-worker--") - len(token)
    return f"agentic-worker-{_dns_chunk(pool)[:room].rstrip('-') or 'pool'}-{token}"


def label_value(raw: str) -> str:
    """``raw`` when it is a valid label value, else a cut prefix plus a hash of all of it."""
    if len(raw) <= MAX_NAME and _LABEL_VALUE.match(raw):
        return raw
    prefix = re.sub(r"[^A-Za-z0-9_.-]", "", raw)[:54]
    prefix = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", prefix)
    digest = _digest(raw)[:8]
    return f"{prefix}-{digest}" if prefix else digest


def step_selector(run_id: str, step_id: str | None = None) -> str:
    """Label selector of a run's step Jobs (and their pods), or of one step's."""
    selector = f"{LABEL_RUN_ID}={label_value(check_id(run_id, 'run id'))}"
    if step_id is not None:
        selector += f",{LABEL_STEP_ID}={label_value(check_id(step_id, 'step id'))}"
    return selector


def worker_selector(pool: str) -> str:
    """Label selector of the worker Jobs of one pool."""
    return f"{LABEL_COMPONENT}=worker,{LABEL_POOL}={label_value(check_id(pool, 'pool'))}"


def pod_security_context() -> dict[str, Any]:
    """Pod-level security context of every agentic pod."""
    return {
        "runAsNonRoot": True,
        "runAsUser": USER_ID,
        "runAsGroup": USER_ID,
        "fsGroup": USER_ID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Container-level security context of every agentic container."""
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _store_volumes(url: str, settings: Settings, what: str) -> tuple[list[dict], list[dict]]:
    """The PVC volume and mount a Job needs to reach ``url``, or none for a remote store."""
    protocol = urlsplit(url).scheme if "://" in url else ""
    if protocol == "memory":
        raise ConfigError(
            f"{what} {url!r} is a memory:// store inside one process; Jobs cannot reach it: "
            "use a path on AGENTIC_K8S_STORE_PVC or an s3:// URL"
        )
    if protocol not in _LOCAL_PROTOCOLS:
        return [], []
    path = url.split("://", 1)[1] if "://" in url else url
    if not settings.k8s_store_pvc:
        raise ConfigError(
            f"{what} {url!r} is a local path: Jobs reach it only through a PVC; set "
            "AGENTIC_K8S_STORE_PVC (or use an s3:// run store)"
        )
    mount = settings.k8s_store_mount_path.rstrip("/") or "/"
    if not (path == mount or path.startswith(mount.rstrip("/") + "/")):
        raise ConfigError(
            f"{what} {url!r} is not under AGENTIC_K8S_STORE_MOUNT_PATH {mount!r}, where Jobs "
            f"mount the PVC {settings.k8s_store_pvc!r}"
        )
    volume = {"name": "run-store", "persistentVolumeClaim": {"claimName": settings.k8s_store_pvc}}
    return [volume], [{"name": "run-store", "mountPath": mount}]


def _env(plain: dict[str, str], settings: Settings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "HOME", "value": HOME},
    ]
    if not settings.crewai_telemetry:
        # Without network CrewAI's telemetry adds ~10 s per kickoff (DESIGN §10).
        env.append({"name": "CREWAI_DISABLE_TELEMETRY", "value": "true"})
    env += [{"name": k, "value": v} for k, v in plain.items()]
    return env


def _pod_spec(
    *,
    args: list[str],
    env: list[dict[str, Any]],
    settings: Settings,
    scheduling: Scheduling,
    store: tuple[list[dict], list[dict]],
    creds: PodCredentials,
    sidecars: tuple[list[dict], list[dict]] = ([], []),
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": settings.k8s_image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["agentic"],
        "args": args,
        "env": env + creds.env,
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "home", "mountPath": HOME},
            *store[1],
            *creds.mounts,
        ],
    }
    if creds.env_from:
        container["envFrom"] = creds.env_from
    if scheduling.resources:
        container["resources"] = copy.deepcopy(scheduling.resources)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": settings.k8s_service_account,
        # Step and worker code never calls the Kubernetes API.
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            {"name": "home", "emptyDir": {}},
            *store[0],
            *creds.volumes,
            *sidecars[1],
        ],
    }
    if sidecars[0]:
        pod["initContainers"] = sidecars[0]
    if scheduling.node_selector:
        pod["nodeSelector"] = dict(scheduling.node_selector)
    if scheduling.tolerations:
        pod["tolerations"] = copy.deepcopy(scheduling.tolerations)
    return pod


def _job(
    name: str,
    settings: Settings,
    labels: dict[str, str],
    annotations: dict[str, str],
    pod: dict[str, Any],
) -> dict[str, Any]:
    metadata = {"labels": dict(labels), "annotations": dict(annotations)}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": settings.k8s_namespace, **copy.deepcopy(metadata)},
        "spec": {
            "backoffLimit": 0,  # the coordinator owns retries; a retry is a new Job
            "ttlSecondsAfterFinished": settings.k8s_job_ttl_s,
            "template": {"metadata": metadata, "spec": pod},
        },
    }


def _step_metadata(spec: StepSpec) -> tuple[dict[str, str], dict[str, str]]:
    """Labels (valid label values, for selectors) and annotations (the exact ids)."""
    labels = {
        **COMMON_LABELS,
        LABEL_COMPONENT: "step",
        LABEL_RUN_ID: label_value(spec.run_id),
        LABEL_STEP_ID: label_value(spec.step_id),
        LABEL_ATTEMPT: str(spec.attempt),
        LABEL_POOL: label_value(spec.pool),
    }
    annotations = {
        LABEL_RUN_ID: spec.run_id,
        LABEL_STEP_ID: spec.step_id,
        LABEL_ATTEMPT: str(spec.attempt),
    }
    return labels, annotations


def step_job_manifest(
    spec: StepSpec,
    settings: Settings,
    *,
    spec_url: str,
    trace_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The Job that runs one attempt of one step: ``agentic execute-step <spec_url>``.

    Args:
        spec: the attempt's StepSpec (its ``store_url`` is where the result goes).
        settings: namespace, image, service account, Secrets, PVC, TTL and pool settings.
        spec_url: where the Job reads the spec; on the PVC or in the remote store.
        trace_env: plain ``TRACEPARENT`` and ``OTEL_*`` values
            (:func:`agentic.tracing.job_env`: never an exporter header), so that the step
            continues the run's trace; a name the step's Secret provides is left to it.

    Raises:
        ConfigError: the store cannot be reached from a pod, a scheduling hint is malformed,
            the providers need secret variables while no Secret is configured, or an MCP
            provider can run neither in the Job nor as a sidecar of it.
    """
    creds = step_credentials(spec, settings)
    store = _store_volumes(spec.store_url, settings, "run store")
    _store_volumes(spec_url, settings, "spec URL")  # the same volume must reach the spec
    timeout = spec.timeout_s if spec.timeout_s is not None else settings.default_step_timeout_s
    servers = sidecars(spec)
    from_secret = {e["name"] for e in creds.env}
    plain = {
        "AGENTIC_RUN_STORE_URL": spec.store_url,
        "AGENTIC_LOG_LEVEL": settings.log_level,
        "AGENTIC_LOG_FORMAT": settings.log_format,
        **sidecar_env(servers),
        **{k: v for k, v in (trace_env or {}).items() if k not in from_secret},
    }
    env = _env(plain, settings)
    clash = {e["name"] for e in env} & from_secret
    if clash:
        raise ConfigError(f"step {spec.step_id!r}: {sorted(clash)} must come from the Secret")
    labels, annotations = _step_metadata(spec)
    pod = _pod_spec(
        args=["execute-step", spec_url],
        env=env,
        settings=settings,
        # Only the kubernetes backend builds step Jobs, in the process of the user whose own
        # catalog or workflow file defines the provider (docs/kubernetes.md, Trust).
        scheduling=scheduling_for(spec.agent_provider, settings.k8s_pools.get(spec.pool)),
        store=store,
        creds=creds,
        sidecars=sidecar_containers(
            servers,
            secret_name=settings.k8s_secret_name,
            security=container_security_context(),
        ),
    )
    job = _job(
        step_job_name(spec.run_id, spec.step_id, spec.attempt), settings, labels, annotations, pod
    )
    job["spec"]["activeDeadlineSeconds"] = max(1, math.ceil(timeout))
    return job


def _nats_url(settings: Settings) -> str:
    if not settings.nats_url:
        raise ConfigError(
            "worker Jobs need AGENTIC_NATS_URL: an embedded NATS server lives in one process"
        )
    for url in settings.nats_url.split(","):
        if "@" in urlsplit(url.strip()).netloc:
            raise ConfigError(
                "AGENTIC_NATS_URL holds credentials; worker Jobs get their NATS identity only "
                "from their pool's seed Secret (AGENTIC_K8S_WORKER_NATS_SECRET)"
            )
    return settings.nats_url


def worker_job_manifest(
    pool: str,
    settings: Settings,
    *,
    name: str,
    trace_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A burst worker Job for ``pool``: ``agentic worker --burst --pool <pool>``.

    Args:
        pool: the worker pool whose queue the Job drains.
        settings: NATS URL, run store, the Kubernetes settings of step Jobs and the pool's
            entry of ``AGENTIC_K8S_POOLS``.
        name: the Job name, e.g. from :func:`worker_job_name`.
        trace_env: plain ``OTEL_*`` values (:func:`agentic.tracing.job_env`), so that the
            Job's steps export their spans.

    Raises:
        ConfigError: no NATS URL (or one with credentials in it), an unreachable store, or a
            Secret name Kubernetes would refuse.
    """
    check_id(pool, "pool")
    if len(name) > MAX_NAME or not _DNS_LABEL.match(name):
        raise ValueError(f"invalid Job name {name!r}: lowercase RFC 1123, at most 63 characters")
    plain = {
        "AGENTIC_NATS_URL": _nats_url(settings),
        "AGENTIC_RUN_STORE_URL": settings.run_store_url,
    }
    for field in _WORKER_SETTINGS:
        value = getattr(settings, field)
        plain[f"AGENTIC_{field.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    plain.update({k: v for k, v in (trace_env or {}).items() if k not in plain})
    scraped = metrics_annotations(settings)
    if scraped:  # the worker serves its metrics where the annotations say
        plain["AGENTIC_METRICS_PORT"] = scraped[SCRAPE_PORT]
        plain["AGENTIC_METRICS_HOST"] = settings.metrics_host
    labels = {**COMMON_LABELS, LABEL_COMPONENT: "worker", LABEL_POOL: label_value(pool)}
    pod = _pod_spec(
        args=["worker", "--burst", "--pool", pool],
        env=_env(plain, settings),
        settings=settings,
        # The pool's settings only: nothing of a submitted step shapes a worker Job.
        scheduling=scheduling_for(None, settings.k8s_pools.get(pool)),
        store=_store_volumes(settings.run_store_url, settings, "run store"),
        creds=worker_credentials(pool, settings),
    )
    if scraped:
        port = {"name": "metrics", "containerPort": settings.metrics_port, "protocol": "TCP"}
        pod["containers"][0]["ports"] = [port]
    return _job(name, settings, labels, {LABEL_POOL: pool, **scraped}, pod)


def metrics_annotations(settings: Settings) -> dict[str, str]:
    """Prometheus' scrape annotations of a pod whose service serves ``/metrics`` on
    ``AGENTIC_METRICS_PORT``; none when metrics are off (or on a free port, unknown here)."""
    if not settings.metrics_port:
        return {}
    return {
        "prometheus.io/scrape": "true",
        SCRAPE_PORT: str(settings.metrics_port),
        "prometheus.io/path": "/metrics",
    }
