"""The event-driven pipeline (backend ``nats``), each figure beside the bare JetStream cycle.

Three figures, on the real stack (nats-server, an ``agentic coordinator`` process, ``agentic
worker`` processes, a file run store), with zero-delay scripted steps:

(a) **step-to-step transition** over sequential 20-step runs: from step k's result
    (``timing.finished_at``, stamped before the worker writes and commits it, so the commit
    is counted) to step k+1 running on a worker (its ``timing.started_at``). Targets: p50
    ≤ 5 ms, p95 ≤ 15 ms; and authentication with signed steps (the default) within 1 ms of
    the p50 of the same stack without them, run by run in turn in the same benchmark.
    Beside them, the same runs on a 3-node loopback cluster with 3 replicas of every
    stream (``agentic up --cluster 3``): the price of replication, with no target.
(b) **throughput**: 200 concurrent 5-step runs on 2 worker processes; none may be lost.
    Compared with one process running the same 1,000 mini-crews (the specs the workers
    ran, read back from the store) back to back. Target: at least 1.2 times its steps per second.
(c) **coordinator footprint**: the coordinator process's resident memory with 1,000
    unfinished runs (no workers, so every run waits on its first step), and whether
    CrewAI is among its modules (asked of the process itself). Target: < 100 MB, never.

Usage::

    python -m benchmarks.bench_nats_pipeline
    python -m benchmarks.bench_nats_pipeline --runs 20 --footprint-runs 100   # a quick look
    python -m benchmarks.bench_nats_pipeline --json > nats.json
    python -m benchmarks.bench_nats_pipeline --baseline nats.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

from benchmarks.bench_nats_cycle import baselines, percentiles
from benchmarks.nats_stack import (
    requests_for,
    run_events,
    running_stack,
    scripted_workflow,
    submit_and_wait,
    warm_up,
)

TARGET_TRANSITION_P50_MS = 5.0
TARGET_SECURITY_COST_MS = 1.0
TARGET_TRANSITION_P95_MS = 15.0
TARGET_THROUGHPUT_RATIO = 1.2
TARGET_COORDINATOR_RSS_MB = 100.0
THROUGHPUT_STEPS = 5


# --- (a) transitions ---------------------------------------------------------------------------


def transitions(steps: int, runs: int, cluster: int = 3) -> dict[str, Any]:
    """Step-to-step transitions of ``runs`` sequential runs of ``steps`` steps, one worker,
    on the secured stack (authentication, signed steps), on the same stack with neither and
    (``cluster`` > 1) on the secured stack over a cluster of ``cluster`` nodes with as many
    replicas, run by run in turn, so all see the same machine.

    Each transition is also split into its legs by the timestamps of the run's events:
    the worker committing step k and reporting it (``finished_at`` → ``step_succeeded``),
    the coordinator deciding (→ ``step_ready`` of k+1), the dispatch and the worker taking
    the message (→ ``step_started``), and the hand-over to the step process
    (→ ``started_at``).
    """
    wf = scripted_workflow(steps, name="transitions")
    gaps: dict[str, list[float]] = {"secured": [], "bare": [], "replicated": []}
    legs: dict[str, list[float]] = {leg: [] for leg in LEGS}
    with contextlib.ExitStack() as stacks:
        running = {
            "secured": stacks.enter_context(running_stack(workers=1)),
            "bare": stacks.enter_context(running_stack(workers=1, secure=False)),
        }
        if cluster > 1:
            running["replicated"] = stacks.enter_context(running_stack(workers=1, cluster=cluster))
        for stack in running.values():
            warm_up(stack.url, workers=1)
        for i in range(runs):  # one run at a time: this figure is latency, not load
            for kind, stack in running.items():
                results, events = _transition_run(stack, wf, f"transition{i}")
                gaps[kind] += [
                    _ms(before.timing.finished_at, after.timing.started_at)
                    for before, after in pairwise(results)
                ]
                if kind == "secured":
                    for leg, samples in transition_legs(results, events).items():
                        legs[leg] += samples
    figures, bare_figures = percentiles(gaps["secured"]), percentiles(gaps["bare"])
    out = {
        "transition_p50_ms": figures["p50_ms"],
        "transition_p95_ms": figures["p95_ms"],
        "transition_n": len(gaps["secured"]),
        "transition_unsecured_p50_ms": bare_figures["p50_ms"],
        "transition_unsecured_p95_ms": bare_figures["p95_ms"],
        "transition_security_cost_p50_ms": round(figures["p50_ms"] - bare_figures["p50_ms"], 3),
    }
    for leg, samples in legs.items():
        out[f"transition_{leg}_p50_ms"] = round(statistics.median(samples), 3)
    if gaps["replicated"]:
        replicated = percentiles(gaps["replicated"])
        out |= {
            "transition_cluster_nodes": cluster,
            "transition_replicated_p50_ms": replicated["p50_ms"],
            "transition_replicated_p95_ms": replicated["p95_ms"],
            "transition_replication_cost_p50_ms": round(
                replicated["p50_ms"] - figures["p50_ms"], 3
            ),
        }
    return out


def _transition_run(stack: Any, wf: Any, run_id: str) -> tuple[list[Any], list[Any]]:
    """Run ``wf`` once on ``stack``: its step results and its events."""
    from agentic.store import open_store

    request = requests_for(wf, run_id, 1)
    run_id = str(request[0].run_id)
    ended, _ = asyncio.run(submit_and_wait(stack.url, request, timeout_s=120))
    if ended[run_id] != "succeeded":
        raise RuntimeError(f"transition run {run_id} {ended}")
    store = open_store(stack.store_url)
    results = [store.read_result(run_id, step) for step in wf.task_sequence]
    return results, asyncio.run(run_events(stack.url, run_id))


# The marks of a transition, in the order they happen: step k's ``finished_at`` -> its
# ``step_succeeded`` stored -> step k+1's ``step_ready`` stored -> its ``started_at`` in the
# step process. (``step_started`` is published after the hand-over, while the step runs, so
# it is not a mark on this path.)
LEGS = ("worker_commit", "coordinator", "dispatch_and_handover")


def transition_legs(results: list[Any], events: list[Any]) -> dict[str, list[float]]:
    """The legs of each transition, in milliseconds (see :data:`LEGS`)."""
    at = {(e.type, e.step_id): e.ts for e in events}
    legs: dict[str, list[float]] = {leg: [] for leg in LEGS}
    for before, after in pairwise(results):
        k, k1 = before.step_id, after.step_id
        marks = [
            before.timing.finished_at,
            at[("step_succeeded", k)],
            at[("step_ready", k1)],
            after.timing.started_at,
        ]
        for leg, (start, end) in zip(LEGS, pairwise(marks), strict=True):
            legs[leg].append(_ms(start, end))
    return legs


def _ms(start: Any, end: Any) -> float:
    return float((end - start).total_seconds() * 1000)


# --- (b) throughput ----------------------------------------------------------------------------


def throughput(runs: int, workers: int) -> dict[str, Any]:
    """Steps per second of ``runs`` concurrent 5-step runs vs. the same crews back to back."""
    from agentic.store import open_store

    wf = scripted_workflow(THROUGHPUT_STEPS, name="throughput")
    requests = requests_for(wf, "throughput", runs)
    with running_stack(workers=workers) as stack:
        warm_up(stack.url, workers=workers)
        cpu_before = stack.cpu_seconds()
        ended, elapsed = asyncio.run(submit_and_wait(stack.url, requests, timeout_s=1800))
        pipeline_cpu = stack.cpu_seconds() - cpu_before
        store = open_store(stack.store_url)
        committed = sum(
            1
            for r in requests
            for step in wf.task_sequence
            if store.read_result(str(r.run_id), step) is not None
        )
        specs = [
            store.read_spec(str(r.run_id), step) for r in requests for step in wf.task_sequence
        ]
        # While the store exists: a step reads the outputs it sees from it, as on a worker.
        back_to_back_s, single_cpu = back_to_back(specs)
    succeeded = sum(1 for status in ended.values() if status == "succeeded")
    steps = runs * THROUGHPUT_STEPS
    pipeline_rate, single_rate = steps / elapsed, steps / back_to_back_s
    cpu_per_step, single_cpu_per_step = pipeline_cpu / steps, single_cpu / steps
    return {
        "throughput_runs": runs,
        "throughput_workers": workers,
        "throughput_runs_lost": runs - succeeded,
        "throughput_results_committed": committed,
        "throughput_steps_per_s": round(pipeline_rate, 2),
        "single_process_steps_per_s": round(single_rate, 2),
        "throughput_ratio": round(pipeline_rate / single_rate, 3),
        # What the machine's other load cannot distort: CPU per step of every process of
        # the stack vs. of the single process, and the ratio that gives on idle cores.
        "throughput_cpu_ms_per_step": round(cpu_per_step * 1000, 2),
        "single_process_cpu_ms_per_step": round(single_cpu_per_step * 1000, 2),
        "throughput_cpu_bound_ratio": round(workers * single_cpu_per_step / cpu_per_step, 3),
    }


def back_to_back(specs: list[Any]) -> tuple[float, float]:
    """Wall and CPU seconds for one process to run every spec's mini-crew in turn."""
    os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
    from agentic.runtime import execute_step

    for spec in specs[:5]:  # CrewAI's first kickoffs import and cache more: not measured
        execute_step(spec)
    start, cpu = time.perf_counter(), time.process_time()
    for spec in specs:
        result = execute_step(spec)
        if result.status != "succeeded":
            raise RuntimeError(f"baseline crew {spec.run_id}/{spec.step_id} failed")
    return time.perf_counter() - start, time.process_time() - cpu


# --- (c) coordinator footprint -----------------------------------------------------------------


def coordinator_footprint(runs: int) -> dict[str, Any]:
    """The coordinator's memory with ``runs`` unfinished runs, and whether it has CrewAI."""
    from agentic import names
    from agentic.bus import EmbeddedNats
    from agentic.cli.process_stack import has_interest

    with tempfile.TemporaryDirectory(prefix="agentic-bench-footprint-") as tmp:
        report = Path(tmp) / "report.json"
        with EmbeddedNats(store_dir=Path(tmp) / "js") as server:
            env = {
                **os.environ,
                "AGENTIC_ALLOW_INLINE_PROVIDERS": "true",  # its runs define their provider
                "AGENTIC_NATS_URL": server.url,
                "AGENTIC_RUN_STORE_URL": str(Path(tmp) / "store"),
                "AGENTIC_LOG_LEVEL": os.environ.get("AGENTIC_LOG_LEVEL", "ERROR"),
            }
            probe = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.coordinator_probe", str(report)], env=env
            )
            try:
                deadline = time.monotonic() + 60
                while not has_interest(server.monitor_url, names.SUBMIT_SUBJECT):
                    if probe.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("the coordinator did not start")
                    time.sleep(0.05)
                idle = ask_probe(probe, report)
                wf = scripted_workflow(THROUGHPUT_STEPS, name="footprint")
                requests = requests_for(wf, "footprint", runs)
                asyncio.run(submit_and_wait(server.url, requests, until=("step_ready",)))
                loaded = ask_probe(probe, report)
            finally:
                probe.send_signal(signal.SIGTERM)
                probe.wait(30)
    return {
        "coordinator_unfinished_runs": runs,
        "coordinator_idle_rss_mb": idle["rss_mb"],
        "coordinator_rss_mb": loaded["rss_mb"],
        "coordinator_peak_rss_mb": loaded["peak_rss_mb"],
        "coordinator_imports_crewai": loaded["crewai_imported"] or loaded["runtime_imported"],
    }


def ask_probe(probe: subprocess.Popen[bytes], report: Path) -> dict[str, Any]:
    """Signal the probe and read the report it writes."""
    report.unlink(missing_ok=True)
    probe.send_signal(signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while not report.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the coordinator probe did not report")
        time.sleep(0.02)
    return dict(json.loads(report.read_text()))


# --- report ------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def report_lines(f: dict[str, Any]) -> list[str]:
    """Human-readable lines, each figure beside the bare cycle."""
    from benchmarks.bench_nats_cycle import report_lines as baseline_lines

    cycle = f"bare cycle p50 {f['nats_cycle_p50_ms']:.2f} ms"
    lines = baseline_lines(f)
    if "transition_p50_ms" in f:
        ok = (
            f["transition_p50_ms"] <= TARGET_TRANSITION_P50_MS
            and f["transition_p95_ms"] <= TARGET_TRANSITION_P95_MS
        )
        lines.append(
            f"(a) step → next step on a worker: p50 {f['transition_p50_ms']:.2f} ms, "
            f"p95 {f['transition_p95_ms']:.2f} ms over {f['transition_n']} transitions "
            f"({verdict(ok)} ≤ {TARGET_TRANSITION_P50_MS:g} / ≤ {TARGET_TRANSITION_P95_MS:g} ms; "
            f"{cycle}); legs p50: "
            + ", ".join(f"{leg} {f[f'transition_{leg}_p50_ms']:.2f}" for leg in LEGS)
        )
        cost = f["transition_security_cost_p50_ms"]
        lines.append(
            f"(a) without authentication and signing: p50 "
            f"{f['transition_unsecured_p50_ms']:.2f} ms, p95 "
            f"{f['transition_unsecured_p95_ms']:.2f} ms: they cost {cost:+.2f} ms at p50 "
            f"({verdict(cost <= TARGET_SECURITY_COST_MS)} ≤ {TARGET_SECURITY_COST_MS:g} ms)"
        )
    if "transition_replicated_p50_ms" in f:
        lines.append(
            f"(a) on a {f['transition_cluster_nodes']}-node cluster, "
            f"{f['transition_cluster_nodes']} replicas of every stream: p50 "
            f"{f['transition_replicated_p50_ms']:.2f} ms, p95 "
            f"{f['transition_replicated_p95_ms']:.2f} ms: replication costs "
            f"{f['transition_replication_cost_p50_ms']:+.2f} ms at p50 (beside "
            f"{f['transition_p50_ms']:.2f} ms on one node; no target)"
        )
    if "throughput_ratio" in f:
        ok = f["throughput_ratio"] >= TARGET_THROUGHPUT_RATIO and f["throughput_runs_lost"] == 0
        lines.append(
            f"(b) {f['throughput_runs']} concurrent {THROUGHPUT_STEPS}-step runs, "
            f"{f['throughput_workers']} workers: {f['throughput_steps_per_s']:.1f} steps/s vs "
            f"{f['single_process_steps_per_s']:.1f} back to back in one process = "
            f"{f['throughput_ratio']:.2f}x, {f['throughput_runs_lost']} lost "
            f"({verdict(ok)} ≥ {TARGET_THROUGHPUT_RATIO:g}x; {cycle}); CPU per step "
            f"{f['throughput_cpu_ms_per_step']:.1f} ms across the stack vs "
            f"{f['single_process_cpu_ms_per_step']:.1f} ms, i.e. "
            f"{f['throughput_cpu_bound_ratio']:.2f}x on {f['throughput_workers']} idle cores"
        )
    if "coordinator_rss_mb" in f:
        ok = f["coordinator_rss_mb"] < TARGET_COORDINATOR_RSS_MB
        ok = ok and not f["coordinator_imports_crewai"]
        lines.append(
            f"(c) coordinator with {f['coordinator_unfinished_runs']} unfinished runs: RSS "
            f"{f['coordinator_rss_mb']:.1f} MB (idle {f['coordinator_idle_rss_mb']:.1f}, peak "
            f"{f['coordinator_peak_rss_mb']:.1f}); imports CrewAI: "
            f"{'yes' if f['coordinator_imports_crewai'] else 'no'} "
            f"({verdict(ok)} < {TARGET_COORDINATOR_RSS_MB:g} MB and never; {cycle})"
        )
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--only", default="abc", help="which figures: any of a, b, c (default abc)")
    p.add_argument("--steps", type=int, default=20, help="steps of a transition run (20)")
    p.add_argument("--transition-runs", type=int, default=6, help="transition runs per stack (6)")
    p.add_argument(
        "--cluster", type=int, default=3, help="nodes of (a)'s replicated stack (3; 1: none)"
    )
    p.add_argument("--runs", type=int, default=200, help="concurrent runs of (b) (200)")
    p.add_argument("--workers", type=int, default=2, help="worker processes of (b) (2)")
    p.add_argument("--footprint-runs", type=int, default=1000, help="runs of (c) (1000)")
    p.add_argument("--cycle-n", type=int, default=500, help="bare cycles to time (500)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--baseline", type=Path, help="a previous --json output to compare with")
    return p.parse_args(argv)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    figures: dict[str, Any] = baselines(n=args.cycle_n, directory=tempfile.gettempdir())
    if "a" in args.only:
        figures |= transitions(args.steps, args.transition_runs, args.cluster)
    if "b" in args.only:
        figures |= throughput(args.runs, args.workers)
    if "c" in args.only:
        figures |= coordinator_footprint(args.footprint_runs)
    return figures


def main(argv: list[str] | None = None) -> int:
    from benchmarks.figures import report

    args = parse_args(argv)
    figures = measure(args)
    return report(figures, report_lines(figures), args)


if __name__ == "__main__":
    raise SystemExit(main())
