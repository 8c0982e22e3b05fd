"""Pods, conditions and container states as the real controllers write them."""

from __future__ import annotations

import secrets

from tests.k8s_double.objects import Obj, now_rfc3339


def condition(kind: str, reason: str, message: str) -> Obj:
    """A Job condition set to True."""
    ts = now_rfc3339()
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": ts,
        "lastTransitionTime": ts,
    }


def job_finished(job: Obj) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return any(c["type"] in ("Complete", "Failed") and c["status"] == "True" for c in conditions)


def container_status(name: str, state: Obj, ready: bool = True) -> Obj:
    return {
        "name": name,
        "state": state,
        "ready": ready,
        "restartCount": 0,
        "image": "",
        "imageID": "",
        "started": "running" in state,
    }


def pod_for_job(job: Obj) -> Obj:
    """The pod the Job controller creates: template plus job-name/controller-uid labels."""
    name, uid = job["metadata"]["name"], job["metadata"]["uid"]
    template = job["spec"]["template"]
    labels = {
        **(template.get("metadata") or {}).get("labels", {}),
        "job-name": name,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "batch.kubernetes.io/controller-uid": uid,
    }
    owner = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{name}-{secrets.token_hex(3)[:5]}",
            "labels": labels,
            "annotations": dict((template.get("metadata") or {}).get("annotations", {})),
            "ownerReferences": [owner],
        },
        "spec": dict(template["spec"]),
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }
