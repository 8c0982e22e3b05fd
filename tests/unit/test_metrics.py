"""The services' Prometheus metrics: what the coordinator's runs count, the workers' and the
scaler's metrics, bounded labels, the HTTP endpoint, and the Grafana dashboard in deploy/
(every metric it queries is one the services export, with the labels it groups by)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agentic import failures
from agentic.contracts import (
    RunRecord,
    RunRequest,
    StepError,
    StepResult,
    Timing,
    Usage,
    utcnow,
)
from agentic.coordinator import Dispatch, Emit, FinishRun, ScheduleRetry
from agentic.k8s.scaler_rule import ScaleDecision
from agentic.recording.attempts import record_attempt
from agentic.settings import Settings
from services.coordinator.metrics import GOAL, CoordinatorMetrics
from services.metrics import OTHER, UNKNOWN, BoundedLabel, MetricsEndpoint, serve_metrics
from services.scaler.metrics import ScalerMetrics
from services.worker.metrics import WorkerMetrics
from tests.factories import step_spec
from tests.unit.test_run_driver import Run, workflow

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "agentic.json"
TARGET_LABELS = {"instance", "job"}
"""Labels Prometheus adds to every scraped series."""


async def report(
    run: Run,
    step: str,
    attempt: int,
    *,
    error: StepError | None = None,
    seconds: float = 0.5,
    usage: Usage | None = None,
) -> None:
    """A worker ran ``attempt`` for ``seconds``: it records the result and reports it."""
    await run.driver.on_step_event(run.event("step_started", step, attempt))
    started = utcnow()
    result = StepResult(
        run_id=run.run_id,
        step_id=step,
        attempt=attempt,
        status="failed" if error else "succeeded",
        output="" if error else f"{step} done",
        error=error,
        usage=usage or Usage(),
        timing=Timing(started_at=started, finished_at=started + timedelta(seconds=seconds)),
    )
    record_attempt(run.store, result)
    kind = "step_failed" if error else "step_succeeded"
    await run.driver.on_step_event(run.event(kind, step, attempt))


# --- the coordinator ---------------------------------------------------------------------------


async def test_a_run_with_a_retry_counts_each_attempt_retry_failure_and_end_once() -> None:
    run = Run(workflow("research", "write", retries=1))
    value = run.deps.metrics.registry.get_sample_value
    spent = Usage(prompt_tokens=100, completion_tokens=20, cost_usd=0.25)
    await run.driver.start({})

    rate_limited = StepError(type="RateLimited", message="429", retryable=True)
    await report(run, "research", 1, error=rate_limited, seconds=0.2)
    await asyncio.sleep(0.1)  # the 10 ms backoff passes: attempt 2 is dispatched
    await report(run, "research", 2, seconds=2.0, usage=spent)
    # The same attempt reported again (a redelivery) counts nothing twice.
    await run.driver.on_step_event(run.event("step_succeeded", "research", 2))
    await report(run, "write", 1, seconds=0.5, usage=spent)

    assert run.record().status == "succeeded"
    assert value("agentic_runs_started_total", {"workflow": "w"}) == 1
    assert value("agentic_runs_finished_total", {"workflow": "w", "status": "succeeded"}) == 1
    attempts = {"workflow": "w", "provider": "a"}
    assert value("agentic_step_attempts_total", {**attempts, "step": "research"}) == 2
    assert value("agentic_step_attempts_total", {**attempts, "step": "write"}) == 1
    assert value("agentic_step_retries_total", {"workflow": "w", "step": "research"}) == 1
    assert value("agentic_step_failures_total", {**attempts, "type": "RateLimited"}) == 1
    research = {**attempts, "step": "research"}
    ok, failed = {**research, "status": "succeeded"}, {**research, "status": "failed"}
    assert value("agentic_step_duration_seconds_count", ok) == 1
    assert value("agentic_step_duration_seconds_sum", ok) == pytest.approx(2.0)
    assert value("agentic_step_duration_seconds_bucket", {**ok, "le": "1.0"}) == 0
    assert value("agentic_step_duration_seconds_bucket", {**ok, "le": "2.5"}) == 1
    assert value("agentic_step_duration_seconds_count", failed) == 1
    model = {"provider": "a", "model": UNKNOWN}  # the provider names no model
    assert value("agentic_tokens_total", {**model, "kind": "prompt"}) == 200
    assert value("agentic_tokens_total", {**model, "kind": "completion"}) == 40
    assert value("agentic_cost_usd_total", model) == pytest.approx(0.5)


async def test_failures_the_coordinator_observes_count_by_their_type() -> None:
    run = Run(workflow("slow"))
    value = run.deps.metrics.registry.get_sample_value
    await run.driver.start({})
    await run.driver.on_step_event(run.event("step_started", "slow", 1))

    await run.driver.on_timeout("slow", 1)

    labels = {"workflow": "w", "provider": "a", "type": failures.TIMEOUT}
    assert value("agentic_step_failures_total", labels) == 1
    assert value("agentic_runs_finished_total", {"workflow": "w", "status": "failed"}) == 1


async def test_a_cancelled_run_counts_as_cancelled() -> None:
    run = Run(workflow("a", "b"))
    await run.driver.start({})
    await run.driver.cancel("stop")
    await run.driver.cancel("again")

    labels = {"workflow": "w", "status": "cancelled"}
    assert run.deps.metrics.registry.get_sample_value("agentic_runs_finished_total", labels) == 1


def test_a_planned_goal_labels_its_workflow_and_steps_as_a_goal() -> None:
    wf = workflow("plan-step-1")
    wf = wf.model_copy(update={"name": "plan-write-a-poem-about-the-sea"})
    record = RunRecord(
        run_id="g-1", request=RunRequest(goal="write a poem about the sea"), workflow=wf,
        backend="nats", status="running",
    )  # fmt: skip
    metrics = CoordinatorMetrics()

    metrics.run_started(record)
    metrics.transition(record, [Dispatch("plan-step-1", 1, (), 60.0)])

    value = metrics.registry.get_sample_value
    assert value("agentic_runs_started_total", {"workflow": GOAL}) == 1
    labels = {"workflow": GOAL, "step": GOAL, "provider": "a"}
    assert value("agentic_step_attempts_total", labels) == 1


def test_a_run_is_forgotten_once_it_finished() -> None:
    record = RunRecord(
        run_id="r-9", request=RunRequest(workflow_ref="w"), workflow=workflow("s"),
        backend="nats", status="running",
    )  # fmt: skip
    metrics = CoordinatorMetrics()
    metrics.transition(record, [Dispatch("s", 1, (), 60.0)])
    assert metrics._runs

    metrics.transition(record, [Emit("succeeded", data={"output": "x"}), FinishRun("succeeded")])

    assert not metrics._runs


def test_the_dead_letter_and_leader_metrics() -> None:
    metrics = CoordinatorMetrics()
    metrics.dead_letter("default", "max_deliveries")
    metrics.dead_letter("default", "refused")
    metrics.dead_letter("default", "refused")
    leading = [False]
    metrics.leader.set_function(lambda: float(leading[0]))

    value = metrics.registry.get_sample_value
    assert value("agentic_dead_letters_total", {"pool": "default", "reason": "refused"}) == 2
    assert value("agentic_coordinator_leader") == 0
    leading[0] = True
    assert value("agentic_coordinator_leader") == 1


# --- workers and the scaler --------------------------------------------------------------------


def test_a_worker_counts_its_attempts_by_outcome_and_its_errors_by_type() -> None:
    metrics = WorkerMetrics("default", concurrency=2)
    spec = step_spec()
    started = utcnow()
    timing = Timing(started_at=started, finished_at=started + timedelta(seconds=3))
    ok = StepResult(run_id=spec.run_id, step_id=spec.step_id, attempt=1, status="succeeded",
                    timing=timing)  # fmt: skip
    bad = StepResult.failed(
        spec.run_id, spec.step_id, 1, StepError(type="APIConnectionError", message="down"),
        timing=timing, worker=None,
    )  # fmt: skip
    holding = [1]
    metrics.track(lambda: holding[0])

    metrics.ended(spec, "finished", ok)
    metrics.ended(spec, "finished", bad)
    metrics.ended(spec, "timed_out", None)
    metrics.ended(spec, "crashed", None)
    metrics.ended(spec, "terminated", None)

    value = metrics.registry.get_sample_value
    pool = {"pool": "default", "provider": "writer"}
    for outcome in ("succeeded", "failed", "timed_out", "crashed", "terminated"):
        assert value("agentic_worker_attempts_total", {**pool, "outcome": outcome}) == 1
    for kind in ("APIConnectionError", failures.TIMEOUT, failures.CRASHED):
        assert value("agentic_worker_step_errors_total", {**pool, "type": kind}) == 1
    assert value("agentic_worker_step_duration_seconds_count", pool) == 2
    assert value("agentic_worker_slots", {"pool": "default"}) == 2
    assert value("agentic_worker_steps_in_flight", {"pool": "default"}) == 1
    holding[0] = 0
    assert value("agentic_worker_steps_in_flight", {"pool": "default"}) == 0


def test_the_scaler_reports_its_last_decision_and_counts_its_rounds() -> None:
    metrics = ScalerMetrics("gpu")
    metrics.decided(ScaleDecision(create=2, wanted=3, running=1, lag=3, reason="lag 3"))
    metrics.job_created()
    metrics.job_created()
    metrics.decided(ScaleDecision(create=0, wanted=0, running=0, lag=None, reason="no consumer",
                                  refused=True))  # fmt: skip
    metrics.round_failed()

    value = metrics.registry.get_sample_value
    pool = {"pool": "gpu"}
    assert value("agentic_scaler_jobs_wanted", pool) == 3  # a refusal keeps the last decision
    assert value("agentic_scaler_jobs_running", pool) == 1
    assert value("agentic_scaler_queue_lag", pool) == 3
    assert value("agentic_scaler_jobs_created_total", pool) == 2
    for result in ("scaled", "refused", "failed"):
        assert value("agentic_scaler_rounds_total", {**pool, "result": result}) == 1


# --- labels and the endpoint -------------------------------------------------------------------


def test_a_label_keeps_a_bounded_number_of_values() -> None:
    label = BoundedLabel(limit=2)

    assert [label("a"), label("b"), label("c"), label("a")] == ["a", "b", OTHER, "a"]
    assert label(None) == OTHER  # "unknown" would be a third value
    assert BoundedLabel()("") == UNKNOWN
    assert len(BoundedLabel()("x" * 500)) == 100


def test_the_endpoint_serves_its_registry_over_http_until_stopped() -> None:
    metrics = ScalerMetrics("default")
    metrics.job_created()
    settings = Settings(metrics_port=0)
    endpoint = serve_metrics(settings, metrics.registry, "scaler")
    assert endpoint is not None and endpoint.url is not None
    url = endpoint.url
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    finally:
        endpoint.stop()

    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    assert 'agentic_scaler_jobs_created_total{pool="default"} 1.0' in text
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=5)


def test_metrics_are_off_without_a_port_and_a_taken_port_stops_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    assert serve_metrics(Settings(), registry, "worker") is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="services.metrics"):
            assert serve_metrics(Settings(metrics_port=port), registry, "worker") is None
    assert f"worker serves no metrics: cannot bind 127.0.0.1:{port}" in caplog.text
    never_started = MetricsEndpoint(registry, host="127.0.0.1", port=0, service="worker")
    assert never_started.url is None
    never_started.stop()


# --- the dashboard -----------------------------------------------------------------------------


def exported_series() -> dict[str, set[str]]:
    """Every sample name the services export, with its label names: each metric of the
    coordinator, a worker and the scaler, fed enough to have samples, read back from the
    text format Prometheus scrapes."""
    coordinator = CoordinatorMetrics()
    record = RunRecord(
        run_id="r-1", request=RunRequest(workflow_ref="w"), workflow=workflow("s"),
        backend="nats", status="running",
    )  # fmt: skip
    coordinator.run_started(record)
    error = StepError(type="E", message="m", retryable=True)
    coordinator.transition(
        record,
        [
            Dispatch("s", 1, (), 60.0),
            Emit("step_failed", "s", 1, {"error": error.model_dump()}),
            ScheduleRetry("s", 2, 1.0),
        ],
    )
    timing = Timing(started_at=utcnow(), finished_at=utcnow())
    usage = Usage(prompt_tokens=1, completion_tokens=1, cost_usd=0.1)
    result = StepResult(
        run_id="r-1", step_id="s", attempt=2, status="succeeded", timing=timing, usage=usage
    )
    coordinator.outcome(record, result)
    coordinator.transition(record, [FinishRun("succeeded")])
    coordinator.dead_letter("default", "refused")
    coordinator.queues._read = lambda: {"default": (2, 1)}  # type: ignore[method-assign]
    worker = WorkerMetrics("default")
    worker.ended(step_spec(), "finished", result)
    worker.ended(step_spec(), "timed_out", None)
    scaler = ScalerMetrics("default")
    scaler.decided(ScaleDecision(create=1, wanted=1, running=0, lag=1, reason="lag 1"))
    series: dict[str, set[str]] = {}
    for registry in (coordinator.registry, worker.registry, scaler.registry):
        for family in text_string_to_metric_families(generate_latest(registry).decode()):
            for sample in family.samples:
                series.setdefault(sample.name, set()).update(sample.labels)
    return series


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(panel title, PromQL, legend) of every query of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"], target.get("legendFormat", ""))
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def test_every_metric_the_dashboard_queries_is_exported_with_the_labels_it_groups_by() -> None:
    series = exported_series()
    queries = dashboard_queries()
    assert queries

    for title, expr, legend in queries:
        used = set(re.findall(r"\bagentic_\w+", expr))
        assert used, f"{title}: {expr}"
        unknown = used - set(series)
        assert not unknown, f"{title}: {sorted(unknown)} not exported"
        labels = set().union(*(series[name] for name in used)) | TARGET_LABELS
        groups = [
            {label.strip() for label in group.split(",")}
            for group in re.findall(r"\bby \(([^)]*)\)", expr)
        ]
        for grouped in groups:
            assert grouped <= labels, f"{title}: no label {sorted(grouped - labels)}"
        # What an aggregation leaves is what a legend can show.
        shown = set().union(*groups) if groups else labels
        for label in re.findall(r"\{\{(\w+)\}\}", legend):
            assert label in shown, f"{title}: legend {legend!r}"


def test_the_dashboard_shows_every_metric_the_services_export() -> None:
    queried = " ".join(expr for _, expr, _ in dashboard_queries())
    families = {
        re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in exported_series()
    }

    assert {name for name in families if name not in queried} == set()


def test_the_dashboard_panels_have_unique_ids_and_use_the_datasource_variable() -> None:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]

    assert len(ids) == len(set(ids))
    assert dashboard["uid"] and dashboard["title"] == "agentic"
    [variable] = dashboard["templating"]["list"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


def test_agentic_up_gives_each_service_its_own_metrics_port() -> None:
    from agentic.cli.process_stack import ProcessStack

    stack = ProcessStack(Settings(metrics_port=9464), workers=2)

    assert stack.metrics_ports == {"coordinator": 9464, "worker-1": 9465, "worker-2": 9466}
    assert ProcessStack(Settings(metrics_port=0), workers=2).metrics_ports == {}  # free ports
    assert ProcessStack(Settings(), workers=2).metrics_ports == {}  # no endpoints
