"""The coordinator's Prometheus metrics, read off its runs' state machines.

Every :class:`~services.coordinator.runs.RunDriver` reports to the coordinator's one
:class:`CoordinatorMetrics` (``Deps.metrics``):

* :meth:`~CoordinatorMetrics.run_started` when it starts a run;
* :meth:`~CoordinatorMetrics.transition` with the commands of every transition: attempts
  dispatched, retries scheduled, attempts failed (by error type), the run's end (by status).
  The machine decided these once (a duplicate or stale event yields no command), so counting
  commands counts each thing once;
* :meth:`~CoordinatorMetrics.outcome` with each attempt result it reads from the store:
  duration, tokens and cost, each attempt counted once however often its event arrives.

Besides, :class:`QueueLag` reads each pool consumer's counts from JetStream when Prometheus
scrapes; the service reads the leader gauge and the runs it drives when Prometheus scrapes,
and counts dead letters.

Labels are bounded (:class:`~services.metrics.BoundedLabel`): workflow and step ids come from
catalogs; a planned goal's workflow and steps read ``(goal)`` (the planner names them).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

import nats.errors
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agentic import names
from agentic.contracts import RunRecord, StepResult
from agentic.coordinator import Command, Dispatch, Emit, FinishRun, ScheduleRetry
from services.metrics import STEP_BUCKETS, UNKNOWN, BoundedLabel

log = logging.getLogger(__name__)

GOAL = "(goal)"
"""The workflow and step label of a run planned from a goal."""
SCRAPE_TIMEOUT_S = 2.0
LAG_DOC = "Steps of the pool not done: waiting for a worker plus delivered and not yet acked"
PENDING_DOC = "Steps of the pool waiting for a worker (the consumer's num_pending)"


@dataclass
class _Run:
    """What the metrics remember of one run until it ends."""

    workflow: str
    goal: bool
    record: RunRecord
    dispatched: dict[str, str] = field(default_factory=dict)  # step -> provider of its attempt
    seen: set[tuple[str, int]] = field(default_factory=set)  # attempts whose result counted


class CoordinatorMetrics:
    """The coordinator's metrics in a registry of their own.

    Args:
        registry: Where they are registered (default: a new one).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry = registry if registry is not None else CollectorRegistry()
        self.runs_started = Counter(
            "agentic_runs_started",
            "Runs this coordinator started (a run restored after a restart is not counted again)",
            ["workflow"],
            registry=registry,
        )
        self.runs_finished = Counter(
            "agentic_runs_finished",
            "Runs this coordinator drove to their end, by status: succeeded, failed, cancelled",
            ["workflow", "status"],
            registry=registry,
        )
        self.runs_running = Gauge(
            "agentic_runs_running",
            "Runs this coordinator drives now (started or restored, not ended)",
            registry=registry,
        )
        self.attempts = Counter(
            "agentic_step_attempts",
            "Step attempts dispatched to workers (first attempts and retries)",
            ["workflow", "step", "provider"],
            registry=registry,
        )
        self.retries = Counter(
            "agentic_step_retries",
            "Retries scheduled after a failed attempt",
            ["workflow", "step"],
            registry=registry,
        )
        self.failures = Counter(
            "agentic_step_failures",
            "Failed step attempts, by error type (StepError.type: the model's or tool's error, "
            "or StepTimeout, StepCrashed, DeadLettered, ...)",
            ["workflow", "provider", "type"],
            registry=registry,
        )
        self.duration = Histogram(
            "agentic_step_duration_seconds",
            "How long step attempts ran (their results' started_at to finished_at)",
            ["workflow", "step", "provider", "status"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "agentic_tokens",
            "Model tokens of step attempts, by kind: prompt, completion",
            ["provider", "model", "kind"],
            registry=registry,
        )
        self.cost = Counter(
            "agentic_cost_usd",
            "What step attempts cost, in US dollars (attempts whose provider has a price)",
            ["provider", "model"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "agentic_dead_letters",
            "Step messages dead-lettered, by reason: max_deliveries (moved to AGENTIC_DLQ), "
            "refused (a worker refused to run it)",
            ["pool", "reason"],
            registry=registry,
        )
        self.leader = Gauge(
            "agentic_coordinator_leader",
            "1 while this coordinator holds the lease and drives runs, 0 on standby",
            registry=registry,
        )
        self.queues = QueueLag()
        registry.register(self.queues)
        self._workflow, self._step = BoundedLabel(), BoundedLabel()
        self._provider, self._model = BoundedLabel(), BoundedLabel()
        self._type, self._pool = BoundedLabel(), BoundedLabel()
        self._runs: dict[str, _Run] = {}

    # --- what the run drivers report ------------------------------------------------------

    def run_started(self, record: RunRecord) -> None:
        """A run starts (submitted, or found pending in the store)."""
        self.runs_started.labels(self._run(record).workflow).inc()

    def transition(self, record: RunRecord, commands: Sequence[Command]) -> None:
        """The commands of one transition of ``record``'s run."""
        run = self._run(record)
        for command in commands:
            if isinstance(command, Dispatch):
                provider = command.provider or _task_provider(run, command.step_id)
                run.dispatched[command.step_id] = provider
                step = self._step_label(run, command.step_id)
                self.attempts.labels(run.workflow, step, self._provider(provider)).inc()
            elif isinstance(command, ScheduleRetry):
                self.retries.labels(run.workflow, self._step_label(run, command.step_id)).inc()
            elif isinstance(command, Emit) and command.type == "step_failed":
                error = command.data.get("error")
                kind = error.get("type") if isinstance(error, dict) else None
                provider = self._provider(self._provider_of(run, command.step_id or ""))
                self.failures.labels(run.workflow, provider, self._type(kind)).inc()
            elif isinstance(command, FinishRun):
                self.runs_finished.labels(run.workflow, command.status).inc()
                self._runs.pop(record.run_id, None)

    def outcome(self, record: RunRecord, result: StepResult) -> None:
        """An attempt's result read from the store (counted once per attempt)."""
        run = self._run(record)
        key = (result.step_id, result.attempt)
        if key in run.seen:
            return
        run.seen.add(key)
        provider_id = result.provider or self._provider_of(run, result.step_id)
        provider = self._provider(provider_id)
        duration = result.timing.duration_s
        if duration is not None and duration >= 0:
            step = self._step_label(run, result.step_id)
            self.duration.labels(run.workflow, step, provider, result.status).observe(duration)
        model = self._model(_model_of(run, provider_id))
        usage = result.usage
        self.tokens.labels(provider, model, "prompt").inc(usage.prompt_tokens)
        self.tokens.labels(provider, model, "completion").inc(usage.completion_tokens)
        if usage.cost_usd is not None:
            self.cost.labels(provider, model).inc(usage.cost_usd)

    def dead_letter(self, pool: str, reason: str) -> None:
        """A step message of ``pool`` was dead-lettered (``max_deliveries`` or ``refused``)."""
        self.dead_letters.labels(self._pool(pool), reason).inc()

    # --- labels ---------------------------------------------------------------------------

    def _run(self, record: RunRecord) -> _Run:
        run = self._runs.get(record.run_id)
        if run is None:
            goal = record.request.goal is not None
            name = GOAL if goal or record.workflow is None else record.workflow.name
            run = self._runs[record.run_id] = _Run(self._workflow(name), goal, record)
        return run

    def _step_label(self, run: _Run, step_id: str) -> str:
        return GOAL if run.goal else self._step(step_id)

    def _provider_of(self, run: _Run, step_id: str) -> str:
        return run.dispatched.get(step_id) or _task_provider(run, step_id)


def _task_provider(run: _Run, step_id: str) -> str:
    """The step's own agent provider ('' when the workflow has no such task)."""
    workflow = run.record.workflow
    try:
        return workflow.task(step_id).agent_provider_id if workflow is not None else ""
    except KeyError:
        return ""


def _model_of(run: _Run, provider_id: str) -> str:
    workflow = run.record.workflow
    try:
        model = workflow.provider(provider_id).model if workflow is not None else None
    except KeyError:
        model = None
    return model or UNKNOWN


class QueueLag(Collector):
    """Each pool consumer's counts, read from JetStream when Prometheus scrapes.

    ``agentic_queue_lag{pool}`` is what KEDA and ``agentic scaler`` scale on
    (``num_pending + num_ack_pending``); ``agentic_queue_pending{pool}`` the steps no worker
    has taken yet. Nothing is read before :meth:`watch`, nor from the event loop's own
    thread (a scrape runs in the HTTP server's thread and asks the loop).
    """

    def __init__(self) -> None:
        self._source: tuple[JetStreamContext, Collection[str], asyncio.AbstractEventLoop] | None
        self._source = None

    def watch(
        self, js: JetStreamContext, pools: Collection[str], loop: asyncio.AbstractEventLoop
    ) -> None:
        """Read the consumers of ``pools`` (a live collection: pools added later count)."""
        self._source = (js, pools, loop)

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        lag, pending = self._families()
        for pool, (waiting, unacked) in sorted(self._read().items()):
            lag.add_metric([pool], waiting + unacked)
            pending.add_metric([pool], waiting)
        return [lag, pending]

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily("agentic_queue_lag", LAG_DOC, labels=["pool"]),
            GaugeMetricFamily("agentic_queue_pending", PENDING_DOC, labels=["pool"]),
        ]

    def _read(self) -> dict[str, tuple[int, int]]:
        if self._source is None:
            return {}
        js, pools, loop = self._source
        if loop.is_closed() or _in_loop(loop):
            return {}
        # The pools are read on the loop, where the coordinator adds to them.
        future = asyncio.run_coroutine_threadsafe(consumer_counts(js, pools), loop)
        try:
            return future.result(SCRAPE_TIMEOUT_S)
        except (concurrent.futures.TimeoutError, nats.errors.Error, RuntimeError) as exc:
            future.cancel()
            log.debug("queue lag not read: %r", exc)
            return {}


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


async def consumer_counts(js: JetStreamContext, pools: Iterable[str]) -> dict[str, tuple[int, int]]:
    """``(num_pending, num_ack_pending)`` of each pool's ``workers-<pool>`` consumer that
    exists."""
    counts: dict[str, tuple[int, int]] = {}
    for pool in sorted(set(pools)):
        try:
            info = await js.consumer_info(
                names.STEPS_STREAM, names.workers_consumer(pool), timeout=SCRAPE_TIMEOUT_S / 2
            )
        except NotFoundError:
            continue
        counts[pool] = (info.num_pending or 0, info.num_ack_pending or 0)
    return counts
