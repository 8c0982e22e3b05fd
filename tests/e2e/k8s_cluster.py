"""What the Kubernetes end-to-end tests share: a run store on the double's PVC, and settings.

The run store is a local directory that the double mounts as the PVC ``agentic-store`` at
the directory's own path, so paths in specs and settings mean the same inside and outside
the "pods". Job containers run ``agentic`` from this virtualenv (the double puts the
interpreter's bin directory first on ``PATH``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from agentic.settings import Settings
from tests.k8s_double import KubeDouble

NS = "agentic"
PVC = "agentic-store"


@dataclass
class Cluster:
    """The double, a client for it, and settings whose Jobs reach the run store."""

    double: KubeDouble
    api_client: Any
    store_url: str
    settings: Settings

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api_client)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    def jobs(self, selector: str = "") -> list[dict[str, Any]]:
        """Jobs (API JSON) matching ``selector``."""
        items = self.api_client.sanitize_for_serialization(
            self.batch.list_namespaced_job(NS, label_selector=selector).items
        )
        return list(items)

    def pods(self, selector: str = "") -> list[client.V1Pod]:
        return list(self.core.list_namespaced_pod(NS, label_selector=selector).items)

    def running_pods(self, selector: str = "") -> list[client.V1Pod]:
        return [p for p in self.pods(selector) if p.status.phase == "Running"]


def cluster_settings(store_dir: Path, **overrides: Any) -> Settings:
    """Settings for Jobs that mount ``store_dir`` as the PVC at its own path."""
    values: dict[str, Any] = {
        "k8s_namespace": NS,
        "k8s_store_pvc": PVC,
        "k8s_store_mount_path": str(store_dir),
        "run_store_url": str(store_dir),
        "k8s_reconcile_interval_s": 1.0,
        "retry_backoff_base_s": 0.05,
        "retry_backoff_max_s": 0.1,
        "retry_jitter": 0.0,
        **overrides,
    }
    return Settings(**values)
