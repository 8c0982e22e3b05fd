"""How the double's kubelet turns a pod spec into a local process: env, mounts, argv."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.k8s_double.objects import Obj

# A container's resources the double's single node cannot provide unless configured.
GPU = "nvidia.com/gpu"


class PodConfigError(Exception):
    """The pod cannot start: shown as a waiting container (CreateContainerConfigError, …)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Unschedulable(Exception):
    """No node fits the pod: it stays Pending with PodScheduled=False."""


def _secret_data(secret: Obj) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def _field_ref(pod: Obj, path: str) -> str:
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": status.get("podIP", "127.0.0.1"),
        "status.hostIP": status.get("hostIP", "127.0.0.1"),
    }
    if path in simple:
        return str(simple[path] or "")
    if m := re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path):
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise PodConfigError("CreateContainerConfigError", f"fieldRef {path!r} is not emulated")


class EnvResolver:
    """Resolves ``envFrom`` and ``env`` of a container against Secrets and ConfigMaps."""

    def __init__(self, pod: Obj, lookup: Any) -> None:
        self.pod = pod
        self.lookup = lookup  # (resource, name) -> object or None

    def _source(self, resource: str, ref: Mapping[str, Any]) -> dict[str, str] | None:
        obj = self.lookup(resource, ref.get("name", ""))
        if obj is None:
            if ref.get("optional"):
                return None
            kind = "secret" if resource == "secrets" else "configmap"
            raise PodConfigError(
                "CreateContainerConfigError", f'{kind} "{ref.get("name")}" not found'
            )
        return _secret_data(obj) if resource == "secrets" else dict(obj.get("data") or {})

    def _key(self, resource: str, ref: Mapping[str, Any]) -> str | None:
        data = self._source(resource, ref)
        if data is None:
            return None
        if ref.get("key") not in data:
            if ref.get("optional"):
                return None
            raise PodConfigError(
                "CreateContainerConfigError",
                f"couldn't find key {ref.get('key')} in {resource[:-1]} {ref.get('name')}",
            )
        return data[ref["key"]]

    def resolve(self, container: Obj) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for key, resource in (("secretRef", "secrets"), ("configMapRef", "configmaps")):
                if key in source:
                    data = self._source(resource, source[key]) or {}
                    env.update({prefix + k: v for k, v in data.items()})
        for var in container.get("env") or []:  # env wins over envFrom, as in Kubernetes
            value = self._value(var)
            if value is not None:
                # $(NAME) reads the variables defined before this one, as the kubelet does.
                plain = "valueFrom" not in var
                env[var["name"]] = expand_dependent(value, env) if plain else value
        return env

    def _value(self, var: Mapping[str, Any]) -> str | None:
        if "valueFrom" not in var:
            return str(var.get("value", ""))
        source = var["valueFrom"]
        if "fieldRef" in source:
            return _field_ref(self.pod, source["fieldRef"]["fieldPath"])
        if "secretKeyRef" in source:
            return self._key("secrets", source["secretKeyRef"])
        if "configMapKeyRef" in source:
            return self._key("configmaps", source["configMapKeyRef"])
        raise PodConfigError(
            "CreateContainerConfigError", f"env {var['name']}: {sorted(source)} is not emulated"
        )


def expand_dependent(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' dependent variables: ``$(NAME)`` becomes ``env[NAME]`` (kept as it is when
    undefined), ``$$`` a literal ``$``; any other ``$`` stays."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _DEPENDENT.sub(sub, value)


_DEPENDENT = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def check_schedulable(pod: Obj, node_labels: Mapping[str, str], gpus: int, pvcs: Mapping) -> None:
    """Raise :class:`Unschedulable` with the scheduler's kind of message when no node fits."""
    spec = pod["spec"]
    for key, value in (spec.get("nodeSelector") or {}).items():
        if node_labels.get(key) != value:
            raise Unschedulable(
                "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
            )
    wanted = 0
    for container in spec["containers"]:
        resources = container.get("resources") or {}
        for part in ("limits", "requests"):
            wanted = max(wanted, int((resources.get(part) or {}).get(GPU, 0)))
    if wanted > gpus:
        raise Unschedulable(f"0/1 nodes are available: 1 Insufficient {GPU}.")
    for volume in spec.get("volumes") or []:
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim is not None and claim not in pvcs:
            raise Unschedulable(f'persistentvolumeclaim "{claim}" not found')


def mounts(
    pod: Obj, container: Obj, pvcs: Mapping[str, Path], pod_dir: Path
) -> list[tuple[str, Path]]:
    """``(mountPath, local dir)`` of each volume mount; emptyDirs get a fresh dir per pod."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes") or []}
    out = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise PodConfigError("CreateContainerConfigError", f"no volume {mount['name']!r}")
        if mount.get("subPath"):
            raise PodConfigError("CreateContainerConfigError", "subPath is not emulated")
        if "persistentVolumeClaim" in volume:
            local = Path(pvcs[volume["persistentVolumeClaim"]["claimName"]])
        elif "emptyDir" in volume:
            local = pod_dir / "volumes" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
        else:
            kinds = sorted(set(volume) - {"name"})
            raise PodConfigError("CreateContainerConfigError", f"volume type {kinds} not emulated")
        out.append((mount["mountPath"].rstrip("/") or "/", local))
    return sorted(out, key=lambda m: len(m[0]), reverse=True)


def translate(value: str, mapping: list[tuple[str, Path]]) -> str:
    """Rewrite a path (or ``file://`` URL) under a mountPath to the local dir behind it."""
    scheme = "file://" if value.startswith("file://") else ""
    path = value[len(scheme) :]
    for mount_path, local in mapping:
        if path == mount_path or path.startswith(mount_path + "/"):
            return f"{scheme}{local}{path[len(mount_path) :]}"
    return value


def default_base_env() -> dict[str, str]:
    """The worker image's own ENV (services/worker/Dockerfile): ``PATH`` with this
    interpreter's bin dir first, so ``python`` and ``agentic`` resolve, and the catalog the
    image bakes (the repository's ``config/``), where a step finds its Python tools."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "AGENTIC_CONFIG_DIR": str(Path(__file__).resolve().parents[2] / "config"),
    }


def spawn(argv: list[str], env: dict, cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """A container's process, in a session of its own, its output appended to ``log_path``.

    Raises:
        OSError: it could not start (the runtime's StartError / RunContainerError).
    """
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
