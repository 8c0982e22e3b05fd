"""Long workflows on ``nats``: what one step costs the coordinator, by the run's length.

On the real stack (nats-server, an ``agentic coordinator`` process, one ``agentic worker``,
a file run store), one sequential run of ``--short`` (50) zero-delay scripted steps, then
one of ``--long`` (800), each measured on its own:

* **coordinator CPU per step**: the coordinator process's CPU time (utime + stime, from
  ``/proc``) over the run, divided by its steps. Target: long <= 1.5x short.
* **spec bytes per step**: the ``spec.json`` bytes the run left in the store, divided by its
  steps, and the largest ``run.json`` and spec. Target: linear per run (per step: long <=
  1.5x short).

Usage::

    python -m benchmarks.bench_long_runs
    python -m benchmarks.bench_long_runs --short 20 --long 200     # a quick look
    python -m benchmarks.bench_long_runs --json > long.json
    python -m benchmarks.bench_long_runs --baseline long.json
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from benchmarks.figures import parser, report
from benchmarks.nats_stack import (
    BenchStack,
    _cpu_seconds,
    requests_for,
    running_stack,
    scripted_workflow,
    submit_and_wait,
    warm_up,
)

TARGET_RATIO = 1.5


def one_run(stack: BenchStack, steps: int) -> dict[str, float]:
    """Run one sequential run of ``steps`` steps; the coordinator's CPU and the store's bytes."""
    wf = scripted_workflow(steps, name=f"long{steps}")
    (request,) = requests_for(wf, f"long-{steps}", 1)
    coordinator = stack.pids["coordinator"]
    cpu_before = _cpu_seconds(coordinator)
    start = time.perf_counter()
    ended, _ = asyncio.run(submit_and_wait(stack.url, [request], timeout_s=1800))
    wall = time.perf_counter() - start
    cpu = _cpu_seconds(coordinator) - cpu_before
    if ended != {request.run_id: "succeeded"}:
        raise RuntimeError(f"the {steps}-step run did not succeed: {ended}")
    run_dir = Path(stack.store_url) / "runs" / str(request.run_id)
    specs = [p.stat().st_size for p in run_dir.glob("steps/*/spec.json")]
    if len(specs) != steps:
        raise RuntimeError(f"{len(specs)} specs stored for {steps} steps")
    return {
        "wall_s": wall,
        "coordinator_cpu_ms_per_step": 1000 * cpu / steps,
        "spec_bytes_per_step": sum(specs) / steps,
        "largest_spec_bytes": max(specs),
        "run_json_bytes": (run_dir / "run.json").stat().st_size,
    }


def measure(short: int, long: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"short_steps": short, "long_steps": long}
    # Past the default limit of tasks per workflow (AGENTIC_MAX_WORKFLOW_TASKS, 200).
    limits = {"AGENTIC_MAX_WORKFLOW_TASKS": str(max(long, short))}
    with running_stack(workers=1, env=limits) as stack:
        warm_up(stack.url, 1)
        for label, steps in (("short", short), ("long", long)):
            for key, value in one_run(stack, steps).items():
                figures[f"{label}_{key}"] = round(value, 3)
    for key in ("coordinator_cpu_ms_per_step", "spec_bytes_per_step"):
        figures[f"{key}_ratio"] = round(figures[f"long_{key}"] / figures[f"short_{key}"], 2)
    return figures


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def report_lines(f: dict[str, Any]) -> list[str]:
    cpu_ratio = f["coordinator_cpu_ms_per_step_ratio"]
    bytes_ratio = f["spec_bytes_per_step_ratio"]
    return [
        f"sequential runs of {f['short_steps']} and {f['long_steps']} zero-delay steps on nats "
        f"(1 worker): {f['short_wall_s']:.1f} s and {f['long_wall_s']:.1f} s",
        f"coordinator CPU per step: {f['short_coordinator_cpu_ms_per_step']:.2f} ms vs "
        f"{f['long_coordinator_cpu_ms_per_step']:.2f} ms ({cpu_ratio:.2f}x; target <= "
        f"{TARGET_RATIO}x: {verdict(cpu_ratio <= TARGET_RATIO)})",
        f"spec bytes per step: {f['short_spec_bytes_per_step']:,.0f} vs "
        f"{f['long_spec_bytes_per_step']:,.0f} ({bytes_ratio:.2f}x: "
        f"{verdict(bytes_ratio <= TARGET_RATIO)}); largest spec {f['short_largest_spec_bytes']:,} "
        f"vs {f['long_largest_spec_bytes']:,} bytes; run.json {f['short_run_json_bytes']:,} vs "
        f"{f['long_run_json_bytes']:,} bytes",
    ]


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--short", type=int, default=50)
    p.add_argument("--long", type=int, default=800)
    args = p.parse_args(argv)
    figures = measure(args.short, args.long)
    return report(figures, report_lines(figures), args)


if __name__ == "__main__":
    raise SystemExit(main())
