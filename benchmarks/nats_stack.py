"""What the NATS pipeline benchmarks share: scripted workflows, a stack, submit-and-wait.

The stack is the real one (``agentic up``'s :class:`~agentic.cli.stack.ProcessStack`): an
embedded nats-server, an ``agentic coordinator`` process and ``agentic worker`` processes,
all on a file run store in a temporary directory. By default it is secured as ``agentic up``
secures it (fresh credentials, signed steps); ``secure=False`` runs the same services with
neither (``benchmarks.unsigned_services``), to measure what they cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats.errors
from nats.aio.client import Client as NATS
from nats.js.api import DeliverPolicy

from agentic.contracts import (
    AgentProvider,
    RunEvent,
    RunRequest,
    ScriptedScript,
    TaskConfig,
    WorkflowConfig,
)
from agentic.processes import descendants_of
from agentic.settings import Settings

TERMINAL = ("succeeded", "failed", "cancelled")
SECURE_SERVICES = (sys.executable, "-m", "agentic")
UNSIGNED_SERVICES = (sys.executable, "-m", "benchmarks.unsigned_services")


def scripted_workflow(steps: int, *, name: str = "bench", delay_s: float = 0.0) -> WorkflowConfig:
    """``steps`` sequential scripted steps without tools, each waiting ``delay_s`` for its
    model's answer (no CPU, like an LLM call)."""
    provider = AgentProvider(
        id="bench_agent",
        type="scripted",
        role="Benchmark agent",
        goal="Answer at once",
        backstory="Exists to measure the pipeline.",
        script=ScriptedScript(replies=["{step_id} done."], delay_s=delay_s),
    )
    tasks = [
        TaskConfig(
            id=f"s{i:02d}",
            agent_provider_id="bench_agent",
            description=f"Step {i} of the benchmark.",
            expected_output="One line.",
            mcp_providers=[],
        )
        for i in range(1, steps + 1)
    ]
    return WorkflowConfig(
        name=name,
        topic="benchmarks",
        agent_providers=[provider],
        tasks=tasks,
        task_sequence=[t.id for t in tasks],
    )


@dataclass
class BenchStack:
    """A running stack and where it keeps things."""

    url: str
    store_url: str
    monitor_url: str
    pids: dict[str, int] = field(default_factory=dict)

    def cpu_seconds(self) -> float:
        """CPU time used so far by the stack: nats-server, the services and everything
        under them (a worker's fork server and its step processes), with that of the
        children they reaped (step processes recycled by a fork server)."""
        roots = set(self.pids.values())
        tree = roots.union(*(descendants_of(pid) for pid in roots))
        return sum(_cpu_seconds(pid) for pid in tree)


def _cpu_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of ``pid`` (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running_stack(
    workers: int,
    *,
    root: str | Path | None = None,
    secure: bool = True,
    cluster: int = 1,
    concurrency: int = 1,
    isolation: str | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[BenchStack]:
    """nats-server, a coordinator and ``workers`` worker processes on a temporary store.

    Args:
        workers: Worker processes.
        root: Where the temporary folder goes.
        secure: Authentication and signed steps, as ``agentic up`` runs; False: neither.
        cluster: nats-server nodes; more than one: a loopback cluster with that many
            replicas of every stream (``agentic up --cluster``).
        concurrency: Slots of each worker.
        isolation: The workers' ``--isolation`` (None: their default, ``process``).
        env: More variables for the services.
    """
    from agentic.cli.process_stack import ProcessStack

    with tempfile.TemporaryDirectory(prefix="agentic-bench-nats-", dir=root) as tmp:
        store_url = str(Path(tmp) / "store")
        services_env = {
            "AGENTIC_RUN_STORE_URL": store_url,
            "CREWAI_DISABLE_TELEMETRY": "true",
            "AGENTIC_ALLOW_INLINE_PROVIDERS": "true",  # the benchmark workflows define theirs
            "AGENTIC_LOG_LEVEL": os.environ.get("AGENTIC_LOG_LEVEL", "ERROR"),  # no start notices
            **(env or {}),
        }
        stack = ProcessStack(
            Settings(),
            workers=workers,
            port=0,
            data_dir=Path(tmp) / "js",
            env=services_env,
            secure=secure,
            service_command=SECURE_SERVICES if secure else UNSIGNED_SERVICES,
            cluster=cluster,
            concurrency=concurrency,
            isolation=isolation,
        )
        stack.start()
        try:
            assert stack.server is not None
            pids = {name: proc.pid for name, proc in stack.children.items()}
            nodes = getattr(stack.server, "nodes", [stack.server])
            for i, node in enumerate(nodes):
                pids["nats-server" if i == 0 else f"nats-server-{i + 1}"] = node.pid or 0
            yield BenchStack(stack.url, store_url, stack.server.monitor_urls[0], pids)
        finally:
            stack.stop()


async def submit_and_wait(
    url: str,
    requests: list[RunRequest],
    *,
    until: tuple[str, ...] = TERMINAL,
    timeout_s: float = 600.0,
) -> tuple[dict[str, str], float]:
    """Submit every request at once and wait until each run published an event in ``until``.

    Events are read with an ordered consumer of new events on ``agentic.events.>`` created
    before the first submit.

    Returns:
        The first such event type of each run (by default its terminal event), and the
        seconds from the first submit to the last of them.

    Raises:
        RuntimeError: a run was refused, or not every run ended within ``timeout_s``.
    """
    from agentic.bus import connect
    from agentic.bus.requests import submit_run

    settings = Settings(nats_url=url)
    nc = await connect(settings, name="agentic-bench")
    wanted = {r.run_id for r in requests}
    ended: dict[str, str] = {}
    all_done = asyncio.Event()

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        if msg.subject.rsplit(".", 1)[-1] not in until:
            return  # the type is the subject's last token: skip decoding most events
        event = RunEvent.model_validate_json(msg.data)
        if event.type in until and event.run_id in wanted and event.run_id not in ended:
            ended[event.run_id] = event.type
            if len(ended) == len(wanted):
                all_done.set()

    # An ordered consumer of new events: a client may read the events stream, not listen to
    # its subjects directly (docs/security.md).
    sub = await _events_consumer(nc, on_event)
    try:
        await nc.flush()
        start = time.perf_counter()
        replies = await asyncio.gather(
            *(submit_run(nc, r, max_bytes=settings.max_message_bytes, timeout=60) for r in requests)
        )
        refused = [reply.error for reply in replies if not reply.ok]
        if refused:
            raise RuntimeError(f"{len(refused)} runs refused, e.g. {refused[0]}")
        try:
            await asyncio.wait_for(all_done.wait(), timeout_s)
        except TimeoutError:
            raise RuntimeError(
                f"only {len(ended)} of {len(wanted)} runs ended within {timeout_s:g}s"
            ) from None
        elapsed = time.perf_counter() - start
    finally:
        await sub.unsubscribe()
        await nc.close()
    return ended, elapsed


async def _events_consumer(nc: NATS, on_event: Any, patience_s: float = 30.0) -> Any:
    """An ordered consumer of new events, asked again while JetStream does not answer: a
    cluster that just started may still be electing the events stream's leader (the
    consumer request then times out; seen once in a CI run of the benchmark's smoke test)."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return await nc.jetstream().subscribe(
                "agentic.events.>",
                stream="AGENTIC_EVENTS",
                cb=on_event,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.NEW,
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def run_events(url: str, run_id: str) -> list[RunEvent]:
    """Every stored event of a finished run, in order."""
    from agentic.bus import connect
    from agentic.bus.follow import RunEvents

    settings = Settings(nats_url=url)
    nc = await connect(settings, name="agentic-bench")
    events: list[RunEvent] = []
    try:
        async with RunEvents(nc.jetstream(), run_id, settings) as stream:
            while (event := await stream.next(timeout=1.0)) is not None:
                events.append(event)
    finally:
        await nc.close()
    return events


def requests_for(workflow: WorkflowConfig, prefix: str, count: int) -> list[RunRequest]:
    """``count`` requests of ``workflow`` with run ids ``<prefix>-<i>``."""
    return [
        RunRequest(run_id=f"{prefix}-{i:04d}", workflow=workflow, inputs={"topic": "benchmarks"})
        for i in range(count)
    ]


def warm_up(url: str, workers: int) -> None:
    """One single-step run per worker, so no measured step pays a worker's first imports."""
    runs = requests_for(scripted_workflow(1, name="warmup"), "warmup", 2 * workers)
    ended, _ = asyncio.run(submit_and_wait(url, runs, timeout_s=120))
    if set(ended.values()) != {"succeeded"}:
        raise RuntimeError(f"warm-up runs did not succeed: {ended}")
