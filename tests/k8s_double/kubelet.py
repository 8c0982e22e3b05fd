"""The double's Job controller and kubelet: one pod per Job, run as a local process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.k8s_double.objects import Obj, ObjectStore, now_rfc3339
from tests.k8s_double.podenv import (
    EnvResolver,
    PodConfigError,
    Unschedulable,
    check_schedulable,
    expand_dependent,
    mounts,
    spawn,
    translate,
)
from tests.k8s_double.sidecars import Sidecars
from tests.k8s_double.status import condition, container_status, job_finished, pod_for_job

POLL_S = 0.02


@dataclass
class PodRun:
    """A pod the kubelet looks after; ``stop`` carries why it must end early."""

    ns: str
    name: str
    job: str
    log_path: Path
    stop_reason: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    proc: subprocess.Popen | None = None
    thread: threading.Thread | None = None
    sidecars: Sidecars | None = None


class Kubelet:
    """Creates each Job's pod, runs it, enforces deadlines and reports status back."""

    def __init__(
        self,
        store: ObjectStore,
        workdir: Path,
        *,
        pvcs: Mapping[str, Path],
        unpullable: Iterable[str],
        node_labels: Mapping[str, str],
        gpus: int,
        base_env: Mapping[str, str],
        kill_grace_s: float,
        image_commands: Mapping[str, list[str]] | None = None,
    ) -> None:
        self.store = store
        self.workdir = workdir
        self.pvcs = dict(pvcs)
        self.unpullable = set(unpullable)
        self.node_labels = dict(node_labels)
        self.gpus = gpus
        self.base_env = dict(base_env)
        self.kill_grace_s = kill_grace_s
        self.image_commands = dict(image_commands or {})
        self.runs: dict[tuple[str, str], PodRun] = {}
        self._timers: list[threading.Timer] = []
        self._lock = threading.Lock()

    # --- the Job controller -------------------------------------------------------------------
    def start_job(self, ns: str, job: Obj) -> None:
        """Create the Job's one pod and start looking after it."""
        name = job["metadata"]["name"]
        pod = pod_for_job(job)
        pod_name = pod["metadata"]["name"]
        self.store.create("pods", ns, pod, f'pods "{pod_name}"')
        self.store.update(
            "jobs",
            ns,
            name,
            lambda j: j.setdefault("status", {}).update(startTime=now_rfc3339(), active=1, ready=0),
        )
        run = PodRun(ns, pod_name, name, self.workdir / ns / pod_name / "log")
        run.log_path.parent.mkdir(parents=True, exist_ok=True)
        run.log_path.touch()
        run.thread = threading.Thread(target=self._lifecycle, args=(run,), daemon=True)
        with self._lock:  # started under the lock: stop_pod never sees an unstarted thread
            self.runs[(ns, pod_name)] = run
            run.thread.start()
        deadline = job["spec"].get("activeDeadlineSeconds")
        if deadline is not None:
            timer = threading.Timer(float(deadline), self._deadline, args=(run,))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()

    def _deadline(self, run: PodRun) -> None:
        job = self.store.get("jobs", run.ns, run.job)
        if job is None or job_finished(job):
            return
        self._finish_job(
            run,
            ok=False,
            reason="DeadlineExceeded",
            message="Job was active longer than specified deadline",
        )
        self.stop_pod(run.ns, run.name, "DeadlineExceeded")

    def _finish_job(self, run: PodRun, *, ok: bool, reason: str, message: str) -> None:
        def change(job: Obj) -> None:
            status = job.setdefault("status", {})
            if job_finished(job) or job["metadata"].get("deletionTimestamp"):
                return
            status.update(active=0, ready=0)
            status["succeeded" if ok else "failed"] = 1
            first, final = ("SuccessCriteriaMet", "Complete") if ok else ("FailureTarget", "Failed")
            status["conditions"] = [
                condition(first, reason, message),
                condition(final, reason, message),
            ]
            if ok:
                status["completionTime"] = now_rfc3339()

        self.store.update("jobs", run.ns, run.job, change)

    def stop_pod(self, ns: str, pod: str, reason: str) -> threading.Thread | None:
        """Ask a pod to end (``DeadlineExceeded``, ``Deleted``, ``OOMKilled``, ``Shutdown``)."""
        with self._lock:
            run = self.runs.get((ns, pod))
        if run is None or run.stop.is_set():
            return None
        run.stop_reason = reason
        run.stop.set()
        return run.thread

    def pods_of(self, ns: str, job: str) -> list[str]:
        with self._lock:
            return [r.name for r in self.runs.values() if r.ns == ns and r.job == job]

    def shutdown(self) -> None:
        for timer in self._timers:
            timer.cancel()
        with self._lock:
            runs = list(self.runs.values())
        for run in runs:
            self.stop_pod(run.ns, run.name, "Shutdown")
        for run in runs:
            if run.thread is not None:
                run.thread.join(timeout=self.kill_grace_s + 5)

    # --- the kubelet --------------------------------------------------------------------------
    def _set_pod(self, run: PodRun, **status: object) -> None:
        self.store.update("pods", run.ns, run.name, lambda p: p["status"].update(status))

    def _waiting(self, run: PodRun, container: str, reason: str, message: str) -> None:
        state = {"waiting": {"reason": reason, "message": message}}
        self._set_pod(run, containerStatuses=[container_status(container, state, ready=False)])

    def _lifecycle(self, run: PodRun) -> None:
        pod = self.store.get("pods", run.ns, run.name)
        if pod is None:
            return
        container = pod["spec"]["containers"][0]
        try:
            check_schedulable(pod, self.node_labels, self.gpus, self.pvcs)
        except Unschedulable as exc:
            cond = {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": str(exc),
                "lastTransitionTime": now_rfc3339(),
            }
            self._set_pod(run, conditions=[cond])
            return self._idle_until_stopped(run)
        self.store.update(
            "pods",
            run.ns,
            run.name,
            lambda p: p["spec"].update(nodeName=self.node_labels["kubernetes.io/hostname"]),
        )
        self._set_pod(
            run,
            hostIP="127.0.0.1",
            podIP="127.0.0.1",
            startTime=now_rfc3339(),
            conditions=[
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now_rfc3339()}
            ],
        )
        run.sidecars = sidecars = Sidecars(self, run, pod)
        blocked = sidecars.unpullable()
        if blocked is not None:
            return self._image_pull_failure(run, blocked, sidecars)
        if container["image"] in self.unpullable:
            return self._image_pull_failure(run, container)
        if sidecars.containers:
            self._waiting(run, container["name"], "PodInitializing", "")
        if not sidecars.start():
            return self._idle_until_stopped(run)
        try:
            argv, env, cwd = self._process_spec(pod, container, run)
        except PodConfigError as exc:
            self._waiting(run, container["name"], exc.reason, exc.message)
            return self._idle_until_stopped(run)
        self._run_process(run, container["name"], argv, env, cwd)

    def _idle_until_stopped(self, run: PodRun) -> None:
        run.stop.wait()
        self._after_stop(run)

    def _image_pull_failure(
        self, run: PodRun, container: Obj, sidecars: Sidecars | None = None
    ) -> None:
        """The image cannot be pulled; for a sidecar's, the main container waits behind it."""

        def report(reason: str, message: str) -> None:
            if sidecars is None:
                return self._waiting(run, container["name"], reason, message)
            sidecars.waiting(container, reason, message)
            main = run_container_name(self.store.get("pods", run.ns, run.name))
            self._waiting(run, main, "PodInitializing", "")

        image = container["image"]
        message = f'Failed to pull image "{image}": not found (unpullable in the double)'
        report("ErrImagePull", message)
        if not run.stop.wait(0.2):  # the kubelet backs off and keeps reporting it
            report("ImagePullBackOff", f'Back-off pulling image "{image}"')
        self._idle_until_stopped(run)

    def _process_spec(self, pod: Obj, container: Obj, run: PodRun) -> tuple[list[str], dict, Path]:
        entrypoint = container.get("command") or self.image_commands.get(container["image"])
        if not entrypoint:
            raise PodConfigError(
                "CreateContainerError",
                "the double runs only containers with an explicit command, or an image it "
                "was given a command for (KubeDouble(image_commands=...))",
            )
        pod_dir = run.log_path.parent
        mapping = mounts(pod, container, self.pvcs, pod_dir)
        resolved = EnvResolver(pod, lambda res, name: self.store.get(res, run.ns, name)).resolve(
            container
        )
        home = pod_dir / "home"
        home.mkdir(exist_ok=True)
        env = {**self.base_env, "HOSTNAME": run.name, "HOME": str(home)}
        env.update({k: translate(v, mapping) for k, v in resolved.items()})
        tmp = [local for path, local in mapping if path == "/tmp"]
        if tmp and "TMPDIR" not in resolved:
            env["TMPDIR"] = str(tmp[0])
        # The executable is a program of this machine (the double has no images), never a path
        # inside the pod: a host interpreter under /tmp must not become the pod's /tmp volume.
        words = [expand_dependent(w, resolved) for w in [*entrypoint, *container.get("args", [])]]
        executable, *rest = words
        argv = [executable, *(translate(a, mapping) for a in rest)]
        if container.get("workingDir"):
            cwd = Path(translate(container["workingDir"], mapping))
        else:  # the image's working directory: a fresh one per pod
            cwd = pod_dir / "root"
            cwd.mkdir(exist_ok=True)
        return argv, env, cwd

    def _run_process(self, run: PodRun, name: str, argv: list[str], env: dict, cwd: Path) -> None:
        started = now_rfc3339()
        try:
            run.proc = spawn(argv, env, cwd, run.log_path)
        except OSError as exc:
            return self._terminated(run, name, 128, "StartError", started, message=str(exc))
        running = {"running": {"startedAt": started}}
        self._set_pod(run, phase="Running", containerStatuses=[container_status(name, running)])
        while run.proc.poll() is None and not run.stop.wait(POLL_S):
            pass
        if run.stop.is_set():
            self._kill(run)
            if run.stop_reason == "OOMKilled":
                return self._terminated(run, name, 137, "OOMKilled", started)
            return self._after_stop(run)
        code = run.proc.returncode
        code = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as runtimes report
        self._terminated(run, name, code, "Completed" if code == 0 else "Error", started)

    def _terminated(
        self, run: PodRun, name: str, code: int, reason: str, started: str, message: str = ""
    ) -> None:
        """The container ended: record its state, the pod's phase and the Job's outcome."""
        state: Obj = {
            "exitCode": code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": now_rfc3339(),
        }
        if message:
            state["message"] = message
        if run.sidecars is not None:  # the pod ends once its sidecars have stopped
            run.sidecars.stop()
        terminated = container_status(name, {"terminated": state}, ready=False)
        self._set_pod(
            run, phase="Succeeded" if code == 0 else "Failed", containerStatuses=[terminated]
        )
        if code == 0:
            self._finish_job(
                run,
                ok=True,
                reason="CompletionsReached",
                message="Reached expected number of succeeded pods",
            )
        else:
            self._finish_job(
                run,
                ok=False,
                reason="BackoffLimitExceeded",
                message="Job has reached the specified backoff limit",
            )

    def _kill(self, run: PodRun) -> None:
        assert run.proc is not None
        self.kill_process(run.proc, hard=run.stop_reason == "OOMKilled")

    def kill_process(self, proc: subprocess.Popen, *, hard: bool) -> None:
        """SIGTERM the process group, then SIGKILL after the grace period (``hard``: now)."""
        _signal_group(proc, signal.SIGKILL if hard else signal.SIGTERM)
        try:
            proc.wait(timeout=self.kill_grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()

    def _after_stop(self, run: PodRun) -> None:
        # Deadline, Job deletion or shutdown: the pod is deleted, as the real controller does.
        if run.sidecars is not None:
            run.sidecars.stop()
        self.store.delete("pods", run.ns, run.name)
        with self._lock:
            self.runs.pop((run.ns, run.name), None)


def run_container_name(pod: Obj | None) -> str:
    return pod["spec"]["containers"][0]["name"] if pod else ""


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
