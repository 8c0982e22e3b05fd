"""Native sidecars in the double's kubelet: init containers with ``restartPolicy: Always``.

As the kubelet does (Kubernetes >= 1.29), each sidecar is started in the order of
``initContainers`` and, when it has a ``startupProbe``, the next container (the next sidecar,
then the main container) starts only once that probe has succeeded; sidecars keep running
while the main container runs and are stopped after it (SIGTERM in reverse order, SIGKILL
after the grace period), before the pod's phase becomes terminal. Their statuses are in
``initContainerStatuses``; the main container waits in ``PodInitializing`` meanwhile.

Emulated probes: ``tcpSocket`` and ``httpGet`` (2xx and 3xx succeed) on 127.0.0.1, with
``initialDelaySeconds``, and ``failureThreshold`` times ``periodSeconds`` as the time a probe may
keep failing (the double probes every 50 ms, not every period). Not emulated: restarts (a
sidecar that exits before its probe succeeds, or whose probe keeps failing, is reported
waiting in ``CrashLoopBackOff`` and the pod never proceeds; one that exits while the main
container runs stays terminated), ``exec`` and gRPC probes, readiness and liveness probes,
named ports. Pods share the test machine's network: two pods whose sidecars listen on one port
collide, so tests give each sidecar a free port.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.k8s_double.objects import Obj, now_rfc3339
from tests.k8s_double.podenv import PodConfigError, spawn
from tests.k8s_double.status import container_status

if TYPE_CHECKING:
    from tests.k8s_double.kubelet import Kubelet, PodRun

PROBE_POLL_S = 0.05
PROBE_HANDLERS = ("tcpSocket", "httpGet")


@dataclass
class Sidecar:
    """One running sidecar: its container, process and log."""

    container: Obj
    proc: subprocess.Popen
    started_at: str
    status: Obj


def is_sidecar(container: Obj) -> bool:
    return container.get("restartPolicy") == "Always"


def check_probe(container: Obj, *, sidecar: bool) -> str | None:
    """Why the double cannot emulate the container's probes, or None."""
    for kind in ("livenessProbe", "readinessProbe"):
        if kind in container:
            return f"{kind} (only a sidecar's startupProbe is emulated)"
    probe = container.get("startupProbe")
    if probe is None:
        return None
    if not sidecar:
        return "startupProbe of a main container (only a sidecar's is emulated)"
    handlers = [h for h in ("tcpSocket", "httpGet", "exec", "grpc") if h in probe]
    if len(handlers) != 1 or handlers[0] not in PROBE_HANDLERS:
        return f"startupProbe with {handlers} (only tcpSocket or httpGet is emulated)"
    if not isinstance(probe[handlers[0]].get("port"), int):
        return "a probe on a named port"
    return None


class Sidecars:
    """The native sidecars of one pod, started and stopped by its lifecycle thread."""

    def __init__(self, kubelet: Kubelet, run: PodRun, pod: Obj) -> None:
        self.kubelet = kubelet
        self.run = run
        self.pod = pod
        self.containers = [c for c in pod["spec"].get("initContainers") or [] if is_sidecar(c)]
        self.running: list[Sidecar] = []
        self.statuses: dict[str, Obj] = {
            c["name"]: container_status(
                c["name"], {"waiting": {"reason": "PodInitializing"}}, ready=False
            )
            for c in self.containers
        }

    # --- status -------------------------------------------------------------------------------
    def _publish(self, name: str, state: Obj, *, ready: bool, started: bool) -> None:
        status = container_status(name, state, ready=ready)
        status["started"] = started
        self.statuses[name] = status
        ordered = [self.statuses[c["name"]] for c in self.containers]
        self.kubelet.store.update(
            "pods",
            self.run.ns,
            self.run.name,
            lambda p: p["status"].update(initContainerStatuses=ordered),
        )

    def waiting(self, container: Obj, reason: str, message: str) -> None:
        """A sidecar that cannot start (image, config): it and the main container wait."""
        self._publish(
            container["name"],
            {"waiting": {"reason": reason, "message": message}},
            ready=False,
            started=False,
        )

    def unpullable(self) -> Obj | None:
        """The first sidecar whose image cannot be pulled."""
        return next((c for c in self.containers if c["image"] in self.kubelet.unpullable), None)

    # --- start --------------------------------------------------------------------------------
    def start(self) -> bool:
        """Start every sidecar in order, each once its predecessor's probe succeeded.

        Returns False when the pod must not proceed: it was asked to stop, or a sidecar could
        not start or never passed its probe (its status says why).
        """
        for container in self.containers:
            if self.run.stop.is_set():
                return False
            try:
                argv, env, cwd = self.kubelet._process_spec(self.pod, container, self.run)
            except PodConfigError as exc:
                self.waiting(container, exc.reason, exc.message)
                return False
            log = self.run.log_path.parent / f"log.{container['name']}"
            started = now_rfc3339()
            try:
                proc = spawn(argv, env, cwd, log)
            except OSError as exc:
                self.waiting(container, "RunContainerError", str(exc))
                return False
            sidecar = Sidecar(container, proc, started, {})
            self.running.append(sidecar)
            running = {"running": {"startedAt": started}}
            probe = container.get("startupProbe")
            self._publish(container["name"], running, ready=False, started=probe is None)
            if probe is not None and not self._wait_for_probe(sidecar, probe):
                return False
            self._publish(container["name"], running, ready=True, started=True)
        return True

    def _wait_for_probe(self, sidecar: Sidecar, probe: Obj) -> bool:
        delay = float(probe.get("initialDelaySeconds", 0))
        patience = float(probe.get("periodSeconds", 10)) * int(probe.get("failureThreshold", 3))
        begin = time.monotonic()
        if self.run.stop.wait(delay):
            return False
        while not self.run.stop.is_set():
            if sidecar.proc.poll() is not None:
                return self._crashed(
                    sidecar,
                    f"exited with code {sidecar.proc.returncode} before its startupProbe succeeded",
                )
            if _probe(probe):
                return True
            if time.monotonic() - begin > delay + patience:
                return self._crashed(sidecar, "its startupProbe kept failing")
            self.run.stop.wait(PROBE_POLL_S)
        return False

    def _crashed(self, sidecar: Sidecar, why: str) -> bool:
        message = f"back-off restarting failed container: {why} (restarts are not emulated)"
        self.waiting(sidecar.container, "CrashLoopBackOff", message)
        return False

    # --- stop ---------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the running sidecars, last started first, and record how each ended."""
        while self.running:
            sidecar = self.running.pop()
            proc = sidecar.proc
            if proc.poll() is None:
                self.kubelet.kill_process(proc, hard=False)
            code = proc.returncode
            code = 128 - code if code < 0 else code
            state = {
                "terminated": {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": sidecar.started_at,
                    "finishedAt": now_rfc3339(),
                }
            }
            with contextlib.suppress(Exception):  # the pod may be gone already
                self._publish(sidecar.container["name"], state, ready=False, started=False)


def _probe(probe: Any) -> bool:
    if "tcpSocket" in probe:
        try:
            with socket.create_connection(("127.0.0.1", probe["tcpSocket"]["port"]), timeout=0.5):
                return True
        except OSError:
            return False
    get = probe["httpGet"]
    url = f"http://127.0.0.1:{get['port']}{get.get('path', '/')}"
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return 200 <= response.status < 400
    except urllib.error.HTTPError as exc:
        return 300 <= exc.code < 400
    except OSError:
        return False
