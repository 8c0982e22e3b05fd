"""A real event-driven stack for tests: nats-server, coordinator and workers as processes.

Services run as ``python -m agentic coordinator`` / ``worker`` with ``AGENTIC_*`` variables,
exactly as a user starts them, so a test can kill one with SIGKILL and start another.
Runs are submitted with a plain NATS request and observed through the store and the
events stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from agentic import names
from agentic.contracts import TERMINAL_EVENTS, RunEvent, RunRecord, StepSpec
from agentic.store import RunStore

READY_TIMEOUT_S = 60.0


class ServiceProcess:
    """One ``python -m agentic <args>`` process with its log in a file."""

    def __init__(
        self,
        args: list[str],
        env: Mapping[str, str],
        log_path: Path,
        python_args: tuple[str, ...] = (),
    ) -> None:
        self.args = args
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, *python_args, "-m", "agentic", *args],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_ready(self, marker: str, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait for ``marker`` in the log (the service logs it once it serves)."""
        deadline = time.monotonic() + timeout
        while marker not in self.log_text():
            if not self.alive:
                raise AssertionError(f"{self.args} exited:\n{self.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.args} not ready:\n{self.log_text()[-3000:]}")
            await asyncio.sleep(0.1)

    def metrics_url(self) -> str:
        """Where the service serves ``/metrics`` (it logs it; ``AGENTIC_METRICS_PORT=0``)."""
        found = re.search(r" metrics at (http://\S+/metrics)", self.log_text())
        assert found, f"{self.args} serves no metrics:\n{self.log_text()[-3000:]}"
        return found.group(1)

    def kill9(self) -> None:
        """SIGKILL, like a crash or an OOM kill."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait; SIGKILL when it does not stop in time."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._log.close()
        return int(self.process.returncode)


class Stack:
    """Coordinator and worker processes sharing one nats-server and one file store."""

    def __init__(self, nats_url: str, root: Path, **settings: str) -> None:
        self.root = root
        self.store_dir = root / "store"
        self.env = {
            **os.environ,
            "AGENTIC_NATS_URL": nats_url,
            "AGENTIC_RUN_STORE_URL": str(self.store_dir),
            "AGENTIC_CONFIG_DIR": str(root / "config"),
            "AGENTIC_LOG_LEVEL": "INFO",
            "CREWAI_DISABLE_TELEMETRY": "true",
            # These tests submit inline providers (scripted failure modes); the trust
            # boundary itself is tested in tests/security.
            "AGENTIC_ALLOW_INLINE_PROVIDERS": "true",
            **{f"AGENTIC_{k.upper()}": v for k, v in settings.items()},
        }
        self.coordinator: ServiceProcess | None = None
        self.coordinators: list[ServiceProcess] = []
        self.workers: list[ServiceProcess] = []
        self._count = 0

    def _log(self, name: str) -> Path:
        self._count += 1
        return self.root / f"{self._count:02d}-{name}.log"

    async def start_coordinator(self, *python_args: str) -> ServiceProcess:
        self.coordinator = self.spawn_coordinator(python_args=python_args)
        await self.coordinator.wait_ready("coordinator ready")
        return self.coordinator

    def spawn_coordinator(
        self, *, identity: str | None = None, python_args: tuple[str, ...] = ()
    ) -> ServiceProcess:
        """A coordinator process, not waited for (it may stay on standby)."""
        env = dict(self.env)
        if identity is not None:
            env["AGENTIC_COORDINATOR_ID"] = identity
        coordinator = ServiceProcess(["coordinator"], env, self._log("coordinator"), python_args)
        self.coordinators.append(coordinator)
        return coordinator

    def spawn_worker(self, *args: str) -> ServiceProcess:
        worker = ServiceProcess(["worker", *args], self.env, self._log("worker"))
        self.workers.append(worker)
        return worker

    async def start_workers(self, count: int, *args: str) -> list[ServiceProcess]:
        started = [self.spawn_worker(*args) for _ in range(count)]
        await asyncio.gather(*(w.wait_ready("worker ready") for w in started))
        return started

    def worker_with_pid(self, pid: int) -> ServiceProcess:
        return next(w for w in self.workers if w.pid == pid)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        for coordinator in self.coordinators:
            coordinator.stop()

    def store(self) -> RunStore:
        from agentic.store import open_store

        return open_store(str(self.store_dir))


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(*urls: str) -> Samples:
    """The samples of the ``/metrics`` endpoints at ``urls``, read over HTTP and parsed as
    Prometheus does; a sample that several endpoints have is summed."""
    from prometheus_client.parser import text_string_to_metric_families

    def fetch(url: str) -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    samples: Samples = {}
    for text in await asyncio.gather(*(asyncio.to_thread(fetch, url) for url in urls)):
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                samples[key] = samples.get(key, 0.0) + sample.value
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


async def submit(
    nc: NATS, request: dict[str, Any] | bytes, timeout: float = 15.0
) -> dict[str, Any]:
    """Send a submit request; the coordinator's JSON reply."""
    payload = request if isinstance(request, bytes) else json.dumps(request).encode()
    reply = await nc.request(names.SUBMIT_SUBJECT, payload, timeout=timeout)
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


async def cancel(nc: NATS, run_id: str, timeout: float = 15.0) -> dict[str, Any]:
    reply = await nc.request(
        names.CANCEL_SUBJECT, json.dumps({"run_id": run_id}).encode(), timeout=timeout
    )
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


async def wait_finished(store: RunStore, run_id: str, timeout: float = 60.0) -> RunRecord:
    """Poll ``run.json`` until the run is over."""
    deadline = time.monotonic() + timeout
    while True:
        if store.run_exists(run_id):
            record = store.read_run(run_id)
            if record.is_terminal:
                return record
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not finish within {timeout} s")
        await asyncio.sleep(0.1)


async def run_events(js: JetStreamContext, run_id: str, timeout: float = 30.0) -> list[RunEvent]:
    """Every event of a finished run, in stream order, up to its terminal event.

    ``run.json`` is final before the terminal event is published, so a test that saw the
    run finish in the store waits here for the event.
    """
    events: list[RunEvent] = []
    deadline = time.monotonic() + timeout
    sub = await js.subscribe(names.run_timeline_filter(run_id), ordered_consumer=True)
    try:
        while not events or events[-1].type not in TERMINAL_EVENTS:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"run {run_id} has no terminal event: {events}")
            with contextlib.suppress(TimeoutError):
                msg = await sub.next_msg(timeout=remaining)
                events.append(RunEvent.model_validate_json(msg.data))
        return events
    finally:
        await sub.unsubscribe()


async def wait_event(
    js: JetStreamContext,
    run_id: str,
    event_type: str,
    *,
    step_id: str | None = None,
    matches: Callable[[RunEvent], bool] = lambda event: True,
    timeout: float = 60.0,
) -> RunEvent:
    """The first event of ``event_type`` (for ``step_id``) that ``matches``, waiting for it
    if needed."""
    deadline = time.monotonic() + timeout
    sub = await js.subscribe(names.events_subject(run_id, event_type), ordered_consumer=True)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {event_type} event of run {run_id} within {timeout} s")
            try:
                msg = await sub.next_msg(timeout=remaining)
            except TimeoutError:
                continue
            event = RunEvent.model_validate_json(msg.data)
            if (step_id is None or event.step_id == step_id) and matches(event):
                return event
    finally:
        await sub.unsubscribe()


def process_gone(pid: int) -> bool:
    """True when no process ``pid`` exists (or only a zombie is left)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().split(")")[-1].split()[0] == "Z"
    return True


CATALOG_PROVIDER = """\
id: quick
type: scripted
role: Tester
goal: Finish {topic}
backstory: A scripted agent.
script:
  replies: ["{step_id} done for {topic}"]
"""
CATALOG_WORKFLOW = """\
workflow:
  name: quick_pair
  topic: catalog runs
  agent_providers: [quick]
  tasks:
    - id: first
      agent_provider_id: quick
      description: First {topic}.
      expected_output: A line.
    - id: second
      agent_provider_id: quick
      description: Then {topic}.
      expected_output: A line.
"""


def write_quick_catalog(root: Path) -> None:
    """A catalog with the scripted agent ``quick`` and the two-step workflow ``quick_pair``."""
    (root / "config" / "agent_providers").mkdir(parents=True)
    (root / "config" / "workflows").mkdir()
    (root / "config" / "agent_providers" / "quick.yaml").write_text(CATALOG_PROVIDER)
    (root / "config" / "workflows" / "quick_pair.yaml").write_text(CATALOG_WORKFLOW)


async def dead_letter_of(js: JetStreamContext, run_id: str, timeout: float = 10.0) -> RawStreamMsg:
    """The run's dead letter (the coordinator fails the step first, then moves the message)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(NotFoundError):
            letter = await js.get_last_msg(names.DLQ_STREAM, names.dlq_subject("default"))
            if StepSpec.model_validate_json(letter.data or b"").run_id == run_id:
                return letter
        if time.monotonic() > deadline:
            raise AssertionError(f"no dead letter of run {run_id} within {timeout} s")
        await asyncio.sleep(0.05)


def start_agentic_up(
    data_dir: Path, env: Mapping[str, str], cwd: Path, *args: str
) -> tuple[subprocess.Popen[str], str]:
    """``agentic up --port 0`` in the background; returns it once it printed ``Ready.``, with
    everything it announced (the NATS URL, the pids, the credential)."""
    up = subprocess.Popen(
        [sys.executable, "-m", "agentic", "up", "--port", "0", "--data-dir", str(data_dir), *args],
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert up.stdout is not None
    announced = ""
    while "Ready." not in announced:
        line = up.stdout.readline()
        if not line:
            up.kill()
            raise AssertionError(f"agentic up exited before it was ready:\n{announced}")
        announced += line
    return up, announced
