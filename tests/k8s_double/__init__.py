"""A test double of the Kubernetes API server, for the official ``kubernetes`` Python client.

It serves, for one cluster with one node, the subset of the API that agentic's ``kubernetes``
backend and ``agentic scaler`` use:

* batch/v1 Jobs in a namespace: create (201; 409 when the name exists; 422 when the object
  fails the real 1.31 JSON schema, a Job name is not a 63-character DNS label, or a label key
  or value is invalid), get, get ``/status``, list with ``labelSelector`` (``=``, ``==``,
  ``!=``, exists, ``!key``, ``in``, ``notin``), watch (``?watch=true``: JSON lines over a
  chunked response, ``resourceVersion`` to resume, synthetic ADDED events without one,
  ``timeoutSeconds``, an ERROR event with 410 after :meth:`KubeDouble.compact`), and delete
  (404 once gone; ``propagationPolicy`` Foreground: the Job gets ``deletionTimestamp`` and the
  ``foregroundDeletion`` finalizer, its pods are killed and deleted, then the Job; Background:
  the Job goes at once and its pods after; no policy means Orphan, the real default for
  batch/v1 Jobs: the pods keep running).
* core/v1 Pods: get, list, watch, and the log (``tailLines``, ``follow``; 400 while the
  container is waiting to start, as the real server answers).
* core/v1 Secrets and ConfigMaps: create, get, list, watch, delete (or :meth:`add_secret`).

Its "kubelet" creates one pod per Job (labels ``job-name``, ``controller-uid``, an owner
reference) and runs the container's ``command`` + ``args`` as a local process in its own
process group, with the pod's env (plain values; ``fieldRef`` to the pod's name, namespace,
uid, node, IPs, labels and annotations; ``secretKeyRef`` / ``configMapKeyRef``; ``envFrom``
Secrets and ConfigMaps, ``optional`` honoured, env winning over envFrom) on top of a small base
env (``PATH`` with this interpreter's bin dir first, ``HOSTNAME``, a per-pod ``HOME``). Volume
mounts map to local directories: a PVC to the directory given for its claim name, an emptyDir
to a fresh per-pod directory. A process cannot see a different file tree, so every argument
(after the executable, which is a program of this machine), env value and ``workingDir`` that
is (or is a ``file://`` URL of) a path under a ``mountPath`` is rewritten to the local directory;
mount a PVC at its own local path to keep paths identical inside and outside (paths a process
builds in other ways are not rewritten).
Pod and Job status follow the real controllers: Pending → Running → Succeeded/Failed with
container states (running, terminated with exit code and reason Completed/Error/OOMKilled/
StartError), Job ``startTime``, ``active``/``succeeded``/``failed``, ``completionTime`` and
conditions (SuccessCriteriaMet + Complete, FailureTarget + Failed with reason
BackoffLimitExceeded or DeadlineExceeded). ``activeDeadlineSeconds`` kills the process
(SIGTERM, SIGKILL after a grace period), fails the Job with DeadlineExceeded and deletes the
pod. Images in ``unpullable_images`` leave the pod Pending with the container waiting in
ErrImagePull, then ImagePullBackOff, never running (the Job stays active until its deadline,
as on a real cluster). A ``nodeSelector`` the node's labels do not satisfy, more
``nvidia.com/gpu`` than the node has, or an unknown PVC leaves the pod Pending with
PodScheduled=False, reason Unschedulable. Env that cannot be resolved (a missing non-optional
Secret or key) leaves the container waiting in CreateContainerConfigError.
Native sidecars (init containers with ``restartPolicy: Always``) run as local processes too:
started in order before the main container, each waited for by its ``startupProbe``, kept
running beside it and stopped after it, with ``initContainerStatuses`` and per-container logs
(``?container=``); :mod:`tests.k8s_double.sidecars` says what of them is emulated. ``$(VAR)``
in env values, ``command`` and ``args`` expands from the container's earlier variables.
:meth:`KubeDouble.oom_kill` kills a running pod as the OOM killer would (exit 137, OOMKilled);
:meth:`KubeDouble.silence_watches` makes open and new watches deliver nothing until resumed.

What it does NOT emulate (requests that need it get 400/405/422 saying so, where detectable):

* authentication, authorization (RBAC), admission (Pod Security), API discovery, ``/version``;
  any resource other than the four above; cluster-scoped paths; PUT, PATCH, ``/status``
  writes, server-side apply, ``dryRun``, ``fieldSelector``, watch bookmarks;
* field defaulting (a created Job has no defaulted ``spec.selector``, ``completions``, …);
  unknown fields are rejected (strict schema), where a real server would drop them with a
  warning;
* Jobs with ``backoffLimit`` other than 0, ``parallelism``/``completions`` other than 1,
  ``restartPolicy`` other than Never, suspend, indexed completion, pod failure or success
  policies, ``ttlSecondsAfterFinished`` (finished Jobs stay until deleted);
* more than one main container, init containers that run to completion, probes other than a
  native sidecar's ``startupProbe`` (``tcpSocket``, ``httpGet``), sidecar restarts, lifecycle
  hooks, images (a container needs an explicit ``command``, or an image the double was given
  a local command for in ``image_commands``: its "entrypoint"), ``resourceFieldRef``;
* securityContext (the process runs as the test's user, with a writable filesystem),
  resource limits (nothing is enforced; only the GPU count is checked for scheduling),
  tolerations and taints, affinity, priorities, preemption, more than one node;
* volume types other than PVC and emptyDir, ``subPath``, read-only mounts, PV binding;
* network isolation (NetworkPolicy), Services, DNS: a pod reaches whatever the test machine
  reaches;
* restarts, ``previous`` logs, garbage collection of orphaned pods, events (``kubectl
  describe``), metrics, the kubelet's own timings (image pulls and scheduling are instant).
"""

from __future__ import annotations

import base64
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.k8s_double.kubelet import Kubelet
from tests.k8s_double.objects import ObjectStore
from tests.k8s_double.podenv import default_base_env
from tests.k8s_double.server import K8S_VERSION, make_server

__all__ = ["K8S_VERSION", "KubeDouble", "wait_for"]


class KubeDouble:
    """The API server double; use as a context manager or call :meth:`start` / :meth:`stop`.

    Args:
        pvc_dirs: claim name -> local directory backing it.
        unpullable_images: images whose pull fails (ErrImagePull, then ImagePullBackOff).
        node_labels: labels of the single node (``nodeSelector`` is checked against them).
        gpus: ``nvidia.com/gpu`` the node has.
        base_env: env every container process starts from (default: ``PATH`` only).
        kill_grace_s: SIGTERM-to-SIGKILL grace when the double kills a pod.
        workdir: where pod logs and emptyDirs live (default: a temporary directory).
        image_commands: image -> the local command that stands for its entrypoint, for
            containers that name no ``command`` (an MCP server's image, say).
    """

    def __init__(
        self,
        *,
        pvc_dirs: Mapping[str, str | Path] | None = None,
        unpullable_images: Iterable[str] = (),
        node_labels: Mapping[str, str] | None = None,
        gpus: int = 0,
        base_env: Mapping[str, str] | None = None,
        kill_grace_s: float = 2.0,
        workdir: str | Path | None = None,
        image_commands: Mapping[str, list[str]] | None = None,
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="k8s-double-"))
        self.store = ObjectStore()
        labels = {"kubernetes.io/os": "linux", "kubernetes.io/hostname": "double-node"}
        self.kubelet = Kubelet(
            self.store,
            self.workdir,
            pvcs={k: Path(v) for k, v in (pvc_dirs or {}).items()},
            unpullable=unpullable_images,
            node_labels={**labels, **(node_labels or {})},
            gpus=gpus,
            base_env=base_env if base_env is not None else default_base_env(),
            kill_grace_s=kill_grace_s,
            image_commands=image_commands,
        )
        self._server = make_server(self)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def unpullable_images(self) -> set[str]:
        return self.kubelet.unpullable

    def start(self) -> KubeDouble:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Kill every pod process, end open watches and stop serving."""
        self.kubelet.shutdown()
        self.store.close()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> KubeDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- clients ------------------------------------------------------------------------------
    def configuration(self) -> Any:
        """A ``kubernetes.client.Configuration`` pointing at the double."""
        from kubernetes import client

        config = client.Configuration(host=self.url)
        return config

    def api_client(self) -> Any:
        """A new ``kubernetes.client.ApiClient`` for the double (close it when done)."""
        from kubernetes import client

        return client.ApiClient(self.configuration())

    # --- test controls ------------------------------------------------------------------------
    def add_secret(self, namespace: str, name: str, data: Mapping[str, str]) -> None:
        """Store a Secret (values given in clear, stored base64-encoded as the API does)."""
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "type": "Opaque",
            "data": encoded,
        }
        self.store.create("secrets", namespace, secret, f'secrets "{name}"')

    def add_pvc(self, claim: str, local_dir: str | Path) -> None:
        """Back the PVC ``claim`` by ``local_dir`` (for pods created from now on)."""
        self.kubelet.pvcs[claim] = Path(local_dir)

    def add_image(self, image: str, command: list[str]) -> None:
        """Run ``command`` (a local program) for containers of ``image`` that name none."""
        self.kubelet.image_commands[image] = list(command)

    def oom_kill(self, namespace: str, pod: str) -> None:
        """Kill a running pod's process as the OOM killer would (exit 137, OOMKilled)."""
        self.kubelet.stop_pod(namespace, pod, "OOMKilled")

    def compact(self) -> None:
        """Forget the watch history: resuming from an older resourceVersion gets 410 Gone."""
        self.store.compact()

    def silence_watches(self, silent: bool = True) -> None:
        """Open and new watches deliver nothing (like the watches that go quiet on long runs)."""
        with self.store._cond:
            self.store.silent = silent
            self.store._cond.notify_all()

    def collect_job(self, namespace: str, job: str, foreground: bool) -> None:
        """Kill and delete a deleted Job's pods; with ``foreground``, then delete the Job."""
        names = set(self.kubelet.pods_of(namespace, job))
        items, _ = self.store.items("pods", namespace, f"job-name={job}")
        names |= {p["metadata"]["name"] for p in items}
        threads = [self.kubelet.stop_pod(namespace, name, "Deleted") for name in names]
        for thread in threads:
            if thread is not None:
                thread.join(timeout=self.kubelet.kill_grace_s + 5)
        for name in names:
            self.store.delete("pods", namespace, name)
        if foreground:
            self.store.delete("jobs", namespace, job)


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` every 20 ms until it is true; False after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False
