"""The ``kubernetes`` backend: each step attempt is a batch/v1 Job running ``agentic execute-step``.

The coordinator loop (:class:`~agentic.backends.local.driver.LocalDriver`) runs in the calling
process and writes each attempt's ``spec.json``; :class:`JobLauncher` creates the attempt's Job
from :func:`agentic.k8s.jobs.step_job_manifest` (deterministic name, ``backoffLimit: 0``,
``activeDeadlineSeconds`` from the step timeout, ``ttlSecondsAfterFinished``). A name that
already exists is the same attempt's Job (a restarted coordinator): it is adopted.

How it learns that a step ended, without polling the API server on every check:

* a watch on the run's Jobs and one on its pods (label ``agentic/run-id``) keep a local copy
  current and wake the driver on every change; each resumes from its ``resourceVersion``
  and lists again after a ``410 Gone`` (:mod:`agentic.backends.kubernetes.watch`);
* a reconcile lists both every ``AGENTIC_K8S_RECONCILE_INTERVAL_S``, because watches go
  silent on long runs;
* :meth:`JobLauncher.check` answers from that copy; the result itself comes from the run
  store, which the driver reads once the Job (or its pod) has ended.

Failures that never reach agentic's code become a failed attempt that names the Kubernetes
reason (see :mod:`agentic.k8s.failures`): an image that cannot be pulled or a pod that cannot
be configured (after ``AGENTIC_K8S_POD_START_GRACE_S``), a pod left unschedulable (after
``AGENTIC_K8S_UNSCHEDULABLE_TIMEOUT_S``), OOMKilled, evicted, the Job's deadline; the pod's
log tail is added when there is one. Terminating deletes the Job with Foreground propagation
(its pod goes too; a Job already gone is fine); a run's unfinished Jobs are deleted when it
ends, and all its Jobs when it was cancelled. Finished Jobs otherwise stay for
``kubectl logs`` until ``ttlSecondsAfterFinished``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agentic import tracing
from agentic.backends.base import StepHealth
from agentic.backends.kubernetes import api as k8s_api
from agentic.backends.kubernetes.watch import WatchedObjects
from agentic.backends.local.launched import LauncherBackend
from agentic.contracts import RunRecord, StepError, StepSpec, utcnow
from agentic.errors import ConfigError
from agentic.k8s import failures
from agentic.k8s.jobs import (
    LABEL_ATTEMPT,
    LABEL_RUN_ID,
    LABEL_STEP_ID,
    step_job_manifest,
    step_job_name,
    step_selector,
)
from agentic.k8s.scaler_rule import job_finished
from agentic.recording.outcome import attempt_outcome, failed_attempt
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.store import RunStore

log = logging.getLogger(__name__)

# The driver sleeps at most this long between checks; a watch event wakes it earlier. Checks
# read the local copy, so this costs no API calls.
POLL_INTERVAL_S = 0.25
NEVER_RAN_EXIT_CODE = 128  # the code reported for a pod whose container never started


@dataclass
class JobHandle:
    """One launched attempt: its spec and Job name, and what is known about it so far."""

    spec: StepSpec
    name: str
    started_at: datetime = field(default_factory=utcnow)
    stuck_since: dict[str, float] = field(default_factory=dict)
    health: StepHealth | None = None


class JobLauncher:
    """Runs the attempts of one run as Jobs (one launcher per run).

    Args:
        store: The run store; specs are already written there by the driver.
        settings: Namespace, image, PVC, timeouts and the reconcile period.
        api_client: A ``kubernetes.client.ApiClient``.
        clock: Monotonic seconds (tests may inject one).
    """

    def __init__(
        self,
        store: RunStore,
        settings: Settings,
        api_client: Any,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from kubernetes import client

        self._store = store
        self._settings = settings
        self._ns = settings.k8s_namespace
        self._batch = client.BatchV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._clock = clock
        self._changed = threading.Condition()
        self._version = 0
        self._waited_version = 0
        self._stop = threading.Event()
        self._run_id: str | None = None
        self._jobs: WatchedObjects | None = None
        self._pods: WatchedObjects | None = None
        self._reconciler: threading.Thread | None = None

    # --- the StepLauncher contract ------------------------------------------------------

    def launch(self, spec: StepSpec) -> JobHandle:
        """Create the attempt's Job (or adopt the one that already has its name)."""
        spec_url = self._store.spec_url(spec.run_id, spec.step_id)
        # The run's trace goes on in the Job (TRACEPARENT), exported as here (OTEL_*).
        trace_env = tracing.job_env()
        manifest = step_job_manifest(spec, self._settings, spec_url=spec_url, trace_env=trace_env)
        jobs = self._watch(spec.run_id)
        try:
            created = k8s_api.create_job(self._batch, manifest)
        except Exception as exc:
            if k8s_api.api_status(exc) != 409:
                raise
            created = self._adopt(spec, manifest["metadata"]["name"])
        jobs.put(created)
        log.info(
            "step %s attempt %d: Job %s", spec.step_id, spec.attempt, created["metadata"]["name"]
        )
        return JobHandle(spec=spec, name=created["metadata"]["name"])

    def check(self, handle: JobHandle) -> StepHealth:
        """The attempt's health from the watched copy; no API call unless it just ended."""
        if handle.health is not None:
            return handle.health
        jobs, _ = self._watched()
        job = jobs.get(handle.name)
        if job is None:
            final = jobs.gone(handle.name)
            if final is None:  # not listed yet: only possible before the first sync
                return StepHealth.unknown(f"Job {handle.name} not seen yet")
            return self._ended(handle, final, self._pod_of(handle.name), deleted=True)
        pod = self._pod_of(handle.name)
        if job_finished(job) or failures.pod_finished(pod):
            return self._ended(handle, job, pod)
        problem = failures.stuck(pod)
        if problem is None:
            handle.stuck_since.clear()
            return StepHealth.running()
        since = handle.stuck_since.setdefault(problem.kind, self._clock())
        waited = self._clock() - since
        if waited < self._patience(problem.kind):
            return StepHealth.running()
        self.terminate(handle)
        self._record(handle, failures.stuck_failure(problem, waited_s=waited), "")
        handle.health = StepHealth.exited(NEVER_RAN_EXIT_CODE)
        return handle.health

    def terminate(self, handle: JobHandle) -> None:
        """Delete the attempt's Job and pod (Foreground); a Job already gone is fine."""
        try:
            k8s_api.delete_job(self._batch, self._ns, handle.name)
        except Exception as exc:  # the end-of-run sweep deletes it if this call failed
            log.warning("could not delete Job %s: %s", handle.name, exc)

    def wait(self, handles: Sequence[JobHandle], timeout: float) -> None:
        """Return when the watched Jobs or pods change, or after ``timeout`` seconds."""
        with self._changed:
            if self._version == self._waited_version:
                self._changed.wait(timeout)
            self._waited_version = self._version

    def close(self) -> None:
        """Stop watching and delete the run's unfinished Jobs: nothing outlives the run."""
        self._stop.set()
        for watched in (self._jobs, self._pods):
            if watched is not None:
                watched.stop()
        if self._run_id is not None:
            self.delete_run_jobs(self._run_id, finished=False)

    def delete_run_jobs(self, run_id: str, *, finished: bool = True) -> list[str]:
        """Delete the run's Jobs by label (unfinished ones only, unless ``finished``)."""
        try:
            return k8s_api.delete_jobs(
                self._batch, self._ns, step_selector(run_id), finished=finished
            )
        except Exception as exc:
            log.warning("could not delete the Jobs of run %s: %s", run_id, exc)
            return []

    # --- watching -----------------------------------------------------------------------

    def _notify(self) -> None:
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def _watch(self, run_id: str) -> WatchedObjects:
        if self._jobs is not None:
            if run_id != self._run_id:
                raise ConfigError(
                    f"one JobLauncher drives one run, not {self._run_id} and {run_id}"
                )
            return self._jobs
        self._run_id = run_id
        selector = step_selector(run_id)
        self._jobs = WatchedObjects(
            self._batch.list_namespaced_job,
            self._ns,
            selector,
            on_change=self._notify,
            what=f"jobs of run {run_id}",
        ).start()
        self._pods = WatchedObjects(
            self._core.list_namespaced_pod,
            self._ns,
            selector,
            on_change=self._notify,
            what=f"pods of run {run_id}",
        ).start()
        self._reconciler = threading.Thread(
            target=self._reconcile_loop, name=f"reconcile-{run_id}", daemon=True
        )
        self._reconciler.start()
        return self._jobs

    def _reconcile_loop(self) -> None:
        while not self._stop.wait(self._settings.k8s_reconcile_interval_s):
            for watched in self._watched():
                try:
                    watched.relist()
                except Exception as exc:  # the next round tries again
                    log.warning("reconcile of run %s failed: %s", self._run_id, exc)

    def _watched(self) -> tuple[WatchedObjects, WatchedObjects]:
        assert self._jobs is not None and self._pods is not None, "nothing launched yet"
        return self._jobs, self._pods

    def _pod_of(self, job_name: str) -> dict[str, Any] | None:
        _, pods = self._watched()
        mine = [p for p in pods.items() if p["metadata"]["labels"].get("job-name") == job_name]
        mine.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))
        return mine[-1] if mine else None

    def _patience(self, kind: str) -> float:
        if kind == "unschedulable":
            return self._settings.k8s_unschedulable_timeout_s
        return self._settings.k8s_pod_start_grace_s

    # --- outcomes -----------------------------------------------------------------------

    def _adopt(self, spec: StepSpec, name: str) -> dict[str, Any]:
        """The existing Job called ``name``, if it runs this very attempt."""
        existing = k8s_api.read_job(self._batch, self._ns, name)
        if existing is None:  # deleted since: create it again
            return k8s_api.create_job(
                self._batch,
                step_job_manifest(
                    spec,
                    self._settings,
                    spec_url=self._store.spec_url(spec.run_id, spec.step_id),
                    trace_env=tracing.job_env(),
                ),
            )
        annotations = existing["metadata"].get("annotations") or {}
        ours = {LABEL_RUN_ID: spec.run_id, LABEL_STEP_ID: spec.step_id}
        ours[LABEL_ATTEMPT] = str(spec.attempt)
        if any(annotations.get(k) != v for k, v in ours.items()):
            raise ConfigError(f"Job {name} exists and runs something else: {annotations}")
        if existing["metadata"].get("deletionTimestamp"):
            raise ConfigError(f"Job {name} of this attempt is being deleted")
        log.info("adopting the existing Job %s", name)
        return existing

    def _ended(
        self,
        handle: JobHandle,
        job: Mapping[str, Any],
        pod: Mapping[str, Any] | None,
        *,
        deleted: bool = False,
    ) -> StepHealth:
        if failures.job_succeeded(job):
            handle.health = StepHealth.exited(0)
            return handle.health
        if not failures.pod_finished(pod):
            # The Job's watch may be ahead of the pod's: the reason is in the pod's final state.
            pod = self._read_pod(handle.name) or pod
        code = failures.exit_code(pod)
        if code == 0:
            handle.health = StepHealth.exited(0)
            return handle.health
        tail = self._log_tail(pod)
        failure = failures.pod_failure(job, pod)
        if failure is None and deleted and not job_finished(job):
            failure = failures.PodFailure(
                failures.POD_FAILED,
                "Deleted",
                f"Kubernetes: Job {handle.name} was deleted before the step finished",
                retryable=True,
            )
        if failure is not None:
            self._record(handle, failure, tail)
        handle.health = StepHealth.exited(NEVER_RAN_EXIT_CODE if code is None else code, tail)
        return handle.health

    def _read_pod(self, job_name: str) -> dict[str, Any] | None:
        try:
            return k8s_api.job_pod(self._core, self._ns, job_name)
        except Exception as exc:  # the copy we have is the best we know then
            log.warning("could not read the pod of Job %s: %s", job_name, exc)
            return None

    def _log_tail(self, pod: Mapping[str, Any] | None) -> str:
        if pod is None or failures.exit_code(pod) is None:
            return ""
        return k8s_api.pod_log_tail(self._core, self._ns, pod["metadata"]["name"])

    def _record(self, handle: JobHandle, failure: failures.PodFailure, tail: str) -> None:
        """Write the attempt's failure, unless the step recorded its own outcome."""
        spec = handle.spec
        if attempt_outcome(self._store, spec.run_id, spec.step_id, spec.attempt) is not None:
            return
        message = f"{failure.message} (Job {handle.name})"
        if failure.type == failures.TIMEOUT:
            # Worded as the driver words its own timeout: whichever fires first, it reads alike.
            timeout = spec.timeout_s
            if timeout is None:
                timeout = self._settings.default_step_timeout_s
            message = f"attempt {spec.attempt} exceeded its timeout of {timeout:g} s; {message}"
        if tail.strip():
            message += f"; log ends with:\n{tail.rstrip()[-2000:]}"
        error = StepError(type=failure.type, message=message, retryable=failure.retryable)
        self._store.write_attempt(
            failed_attempt(
                spec.run_id,
                spec.step_id,
                spec.attempt,
                error,
                started_at=handle.started_at,
                provider=spec.agent_provider.get("id"),
            )
        )


class KubernetesBackend(LauncherBackend):
    """The driver and :class:`JobLauncher`; a cancelled run's Jobs are all deleted."""

    def __init__(self, api_client: Any = None) -> None:
        self._api_client = api_client
        self._client_lock = threading.Lock()
        super().__init__(
            "kubernetes",
            self._launcher,
            poll_interval_s=POLL_INTERVAL_S,
            on_cancelled=self._delete_jobs,
        )

    def api_client(self) -> Any:
        """The injected client, else one from the in-cluster config or the kubeconfig."""
        with self._client_lock:
            if self._api_client is None:
                self._api_client = k8s_api.load_api_client()
            return self._api_client

    def _launcher(self, store: RunStore, settings: Settings) -> JobLauncher:
        if store.url.startswith("memory://"):
            raise ConfigError(
                f"the kubernetes backend needs a run store its Jobs can reach; {store.url!r} "
                "lives in this process only (use a path on AGENTIC_K8S_STORE_PVC or s3://)"
            )
        return JobLauncher(store, settings, self.api_client())

    def _delete_jobs(self, record: RunRecord, settings: Settings) -> None:
        """A cancelled run's Jobs are all deleted, whatever state they were in."""
        from kubernetes import client

        batch = client.BatchV1Api(self.api_client())
        try:
            k8s_api.delete_jobs(batch, settings.k8s_namespace, step_selector(record.run_id))
        except Exception as exc:
            log.warning("could not delete the Jobs of run %s: %s", record.run_id, exc)


def create_backend(*, api_client: Any = None) -> KubernetesBackend:
    """The ``kubernetes`` backend.

    Args:
        api_client: A ``kubernetes.client.ApiClient`` (tests pass one for the API server
            double); by default one is loaded from the in-cluster service account or the
            kubeconfig at the first run.
    """
    return KubernetesBackend(api_client)


__all__ = ["JobHandle", "JobLauncher", "KubernetesBackend", "create_backend", "step_job_name"]
