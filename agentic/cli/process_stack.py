"""``agentic up``: nats-server, one ``agentic coordinator`` process and N ``agentic worker``
processes in the foreground until Ctrl-C or SIGTERM.

Composed here, in the CLI, because the core never imports ``services`` (DESIGN §8). Each
start makes fresh credentials (:mod:`agentic.cli.local_auth`): nats-server lets in only the
stack's own processes and its user, whose client credential it leaves where that user's
clients find it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from agentic import names
from agentic.errors import BusError
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.bus.embedded import EmbeddedCluster, EmbeddedNats
    from agentic.cli.local_auth import StackCredentials

log = logging.getLogger(__name__)

SERVICES_START_TIMEOUT_S = 60.0
CHILD_STOP_GRACE_S = 20.0


@dataclass
class ProcessStack:
    """nats-server, a coordinator process and ``workers`` worker processes.

    Args:
        settings: Settings the children inherit (through the environment).
        workers: Worker processes to start.
        port: Client port of nats-server (``0``: a free one).
        data_dir: JetStream directory (kept: runs survive a restart of the stack).
        concurrency: Slots of each worker.
        isolation: The workers' ``--isolation`` (None: their ``AGENTIC_STEP_ISOLATION``).
        env: Extra environment variables of the children.
        secure: Fresh credentials per start: nats-server lets in only the stack's own
            identities (:mod:`agentic.cli.local_auth`), and the client credential is left
            for this user (:attr:`client_credential`). ``False`` only for comparisons
            (``benchmarks/``): anyone on this machine could then use the stack.
        service_command: How a service process is started (``agentic`` by default).
        cluster: nats-server processes; more than one makes a cluster on loopback (client
            ports ``port``, ``port + 1``, …; JetStream in ``data_dir/n<i>``) and gives every
            stream that many replicas (``AGENTIC_NATS_REPLICAS``), so that killing one node
            loses nothing.
    """

    settings: Settings
    workers: int = 1
    port: int = 4222
    data_dir: str | Path = ".agentic/nats"
    concurrency: int = 1
    isolation: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    secure: bool = True
    service_command: tuple[str, ...] = (sys.executable, "-m", "agentic")
    cluster: int = 1
    console_port: int | None = None
    console_token: str | None = None
    server: EmbeddedNats | EmbeddedCluster | None = None
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    credentials: StackCredentials | None = None
    client_credential: Path | None = None
    _left_credentials: list[Path] = field(default_factory=list, init=False, repr=False)

    def start(self) -> None:
        """Start everything; return once the coordinator answers on ``agentic.runs.submit``.

        Raises:
            BusError: nats-server or the coordinator did not start (the stack is stopped).
        """
        from agentic.bus.embedded import EmbeddedCluster, EmbeddedNats
        from agentic.cli.local_auth import StackCredentials

        if self.port:
            for port in range(self.port, self.port + self.cluster):
                _check_port_free(port)
        if self.console_port:
            _check_port_free(self.console_port)
        if self.secure:
            self.credentials = StackCredentials()
        config_file = self.credentials.server_conf if self.credentials else None
        if self.cluster > 1:
            self.server = EmbeddedCluster(
                self.cluster,
                store_dir=self.data_dir,
                port=self.port or None,
                config_file=config_file,
                terminate_with_parent=True,
            )
            self.env.setdefault("AGENTIC_NATS_REPLICAS", str(min(self.cluster, 5)))
        else:
            self.server = EmbeddedNats(
                store_dir=self.data_dir,
                port=self.port or None,  # 0: any free ports
                monitor_port=free_port() if self.port else None,
                terminate_with_parent=True,
                config_file=config_file,
            )
        try:
            self.server.start()
            self._leave_client_credential()
            self.children["coordinator"] = self._spawn("coordinator")
            for i in range(1, self.workers + 1):
                isolation = ("--isolation", self.isolation) if self.isolation else ()
                self.children[f"worker-{i}"] = self._spawn(
                    "worker", "--concurrency", str(self.concurrency), *isolation, name=f"worker-{i}"
                )
            self._wait_coordinator()
            if self.console_port:
                self._start_console(self.console_port)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        """The NATS URL clients use."""
        assert self.server is not None, "the stack is not started"
        return self.server.url

    def child_env(self, role: str = "client") -> dict[str, str]:
        """The environment of a child of ``role``: ours, pointed at the embedded server, with
        that role's credentials."""
        env = {**os.environ, **self.env, "AGENTIC_NATS_URL": self.url}
        if self.credentials is not None:
            if role == "client":
                env["AGENTIC_NATS_NKEY_SEED_FILE"] = str(self.credentials.client_seed)
            else:
                env.update(self.credentials.env_for(role))
        return env

    def _leave_client_credential(self) -> None:
        """Put the client seed where this user's clients look for it (no flag needed)."""
        if self.credentials is None:
            return
        from agentic.bus.connect import server_urls
        from agentic.bus.credentials import leave_client_credential

        seed = self.credentials.client_seed.read_bytes()
        # One per node: a client given any one node's URL finds it.
        for url in server_urls(self.url):
            self._left_credentials.append(leave_client_credential(self.settings, url, seed))
        self.client_credential = self._left_credentials[0]

    @property
    def metrics_ports(self) -> dict[str, int]:
        """Each service's ``/metrics`` port: ``AGENTIC_METRICS_PORT`` for the coordinator and
        the next ones for the workers, in order (one environment, so one setting, serves
        every process here); empty when the setting is unset, or 0 (each takes a free port
        and logs it)."""
        base = self.settings.metrics_port
        if not base:
            return {}
        names = ["coordinator", *(f"worker-{i}" for i in range(1, self.workers + 1))]
        return {name: base + offset for offset, name in enumerate(names)}

    def _spawn(self, command: str, *args: str, name: str | None = None) -> subprocess.Popen[bytes]:
        from agentic.processes import parent_death_signal

        env = self.child_env(command)
        port = self.metrics_ports.get(name or command)
        if port is not None:
            env["AGENTIC_METRICS_PORT"] = str(port)
        # Own process groups: a Ctrl-C in the terminal reaches only `agentic up`, which then
        # stops the children in order (workers drain before the coordinator goes).
        return subprocess.Popen(
            [*self.service_command, command, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            # Dies with `agentic up`, even when it is killed with SIGKILL (then SIGTERM drains).
            preexec_fn=parent_death_signal(),
        )

    @property
    def console_url(self) -> str | None:
        """The web console's URL with its token, to open once (None: not served)."""
        if not self.console_port:
            return None
        return f"http://127.0.0.1:{self.console_port}/?token={self.console_token}"

    def _start_console(self, port: int, timeout_s: float = SERVICES_START_TIMEOUT_S) -> None:
        """``agentic console`` on loopback, as this stack's client, with a token (the
        user's ``AGENTIC_CONSOLE_TOKEN``, else a fresh one: other users of this machine
        reach loopback too); return once it answers."""
        import secrets

        from agentic.processes import parent_death_signal

        self.console_token = self.settings.console_token or secrets.token_urlsafe(24)
        self.children["console"] = subprocess.Popen(
            [*self.service_command, "console", "--host", "127.0.0.1", "--port", str(port)],
            env={**self.child_env("client"), "AGENTIC_CONSOLE_TOKEN": self.console_token},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=parent_death_signal(),
        )
        deadline = time.monotonic() + timeout_s
        while not _answers(f"http://127.0.0.1:{port}/healthz", self.console_token):
            exited = self.exited()
            if exited:
                raise BusError(f"{exited[0]} exited at start with code {exited[1]}")
            if time.monotonic() >= deadline:
                raise BusError(f"the console did not answer within {timeout_s:g}s")
            time.sleep(0.05)

    def _wait_coordinator(self, timeout_s: float = SERVICES_START_TIMEOUT_S) -> None:
        assert self.server is not None
        deadline = time.monotonic() + timeout_s
        monitors = self.server.monitor_urls
        while not any(has_interest(m, names.SUBMIT_SUBJECT) for m in monitors):
            exited = self.exited()
            if exited:
                raise BusError(f"{exited[0]} exited at start with code {exited[1]}")
            if time.monotonic() >= deadline:
                raise BusError(f"the coordinator did not answer within {timeout_s:g}s")
            time.sleep(0.05)

    def exited(self) -> tuple[str, int] | None:
        """The first child that has exited, and its exit code."""
        for name, proc in self.children.items():
            code = proc.poll()
            if code is not None:
                return name, code
        return None

    def stop(self, grace_s: float = CHILD_STOP_GRACE_S) -> None:
        """SIGTERM the workers, then the coordinator (each drains), then stop nats-server."""
        order = [n for n in self.children if n != "coordinator"] + ["coordinator"]
        for group in ([n for n in order if n != "coordinator"], ["coordinator"]):
            procs = [self.children[n] for n in group if n in self.children]
            _terminate_all(procs, grace_s)
        self.children.clear()
        if self.server is not None:
            self.server.stop()
        if self._left_credentials:
            from agentic.bus.credentials import remove_credential

            for path in self._left_credentials:
                remove_credential(path)
            self._left_credentials.clear()
            self.client_credential = None
        if self.credentials is not None:
            self.credentials.close()
            self.credentials = None


def _terminate_all(procs: list[subprocess.Popen[bytes]], grace_s: float) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("process %s did not stop within %gs; killing it", proc.pid, grace_s)
            proc.kill()
            proc.wait()


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like nats-server itself: a port left in TIME_WAIT by a stopped server is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise BusError(
                f"port {port} is in use (another `agentic up` or nats-server?): "
                "choose one with --port, or --port 0 for any free port"
            ) from exc


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(url: str, token: str) -> bool:
    asked = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(asked, timeout=1) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def has_interest(monitor_url: str, subject: str) -> bool:
    """Whether a client subscribes to ``subject``, from the server's ``/subsz`` endpoint."""
    try:
        with urllib.request.urlopen(f"{monitor_url}/subsz?subs=1&test={subject}", timeout=1) as r:
            return int(json.loads(r.read()).get("total", 0)) > 0
    except (urllib.error.URLError, OSError, ValueError):
        return False
