"""Memory of one NATS worker holding many in-flight LLM-bound steps, per isolation mode.

A step that waits on a model costs no CPU; what limits how many one machine holds is the
memory of the processes holding them. For each isolation mode (``process``, ``thread``) the
benchmark starts a stack whose single worker has ``--concurrency N`` (64), submits N
one-step runs whose scripted model answers after ``delay_s`` (20 s), and samples the total
PSS of the worker's process tree (the worker, its warm fork server, its step processes or
thread host) while all N steps wait. Printed beside it: the same worker idle with 1 slot.
Targets: the ``thread`` worker holds 64 steps in at most 1.5 GB, and in both modes all N
runs end within 2 x ``delay_s`` of their submission::

    python -m benchmarks.bench_worker_memory
    python -m benchmarks.bench_worker_memory --modes thread --steps 64 --delay 20
    python -m benchmarks.bench_worker_memory --json > memory.json
    python -m benchmarks.bench_worker_memory --baseline memory.json
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from agentic.processes import descendants_of
from benchmarks.figures import report
from benchmarks.nats_stack import (
    BenchStack,
    requests_for,
    running_stack,
    scripted_workflow,
    submit_and_wait,
    warm_up,
)

TARGET_TREE_MB = 1536.0
TARGET_END_FACTOR = 2.0
MB = 1024 * 1024


def tree_of(root: int) -> list[int]:
    """``root`` and every live process under it."""
    return [root, *descendants_of(root)]


def pss_bytes(pid: int) -> int:
    """Proportional set size of ``pid`` (0 if it is gone): shared pages divided among the
    processes sharing them, so a tree's sum counts each page once."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_pss_mb(root: int) -> tuple[float, int]:
    """Total PSS of ``root``'s tree in MB, and how many processes it has."""
    pids = tree_of(root)
    return sum(pss_bytes(pid) for pid in pids) / MB, len(pids)


def idle(mode: str) -> dict[str, Any]:
    """The worker's tree with 1 slot, after one step (its warm runtime is loaded)."""
    with running_stack(1, isolation=mode) as stack:
        warm_up(stack.url, 1)
        time.sleep(1.0)
        mb, processes = tree_pss_mb(stack.pids["worker-1"])
    return {f"{mode}_idle_pss_mb": round(mb, 1), f"{mode}_idle_processes": processes}


def loaded(mode: str, steps: int, delay_s: float) -> dict[str, Any]:
    """The worker's tree with ``steps`` slots, all of them waiting on a model."""
    with running_stack(1, isolation=mode, concurrency=steps) as stack:
        warm_up(stack.url, 1)
        peak: dict[str, float] = {"mb": 0.0, "processes": 0}
        workflow = scripted_workflow(1, name="memory", delay_s=delay_s)
        elapsed = asyncio.run(_hold(stack, workflow, steps, delay_s, peak))
    return {
        f"{mode}_steps": steps,
        f"{mode}_loaded_pss_mb": round(peak["mb"], 1),
        f"{mode}_loaded_processes": int(peak["processes"]),
        f"{mode}_all_ended_s": round(elapsed, 2),
        f"{mode}_delay_s": delay_s,
    }


async def _hold(
    stack: BenchStack, workflow: Any, steps: int, delay_s: float, peak: dict[str, float]
) -> float:
    """Submit ``steps`` runs and sample the worker's PSS until they end; seconds to the end."""
    worker = stack.pids["worker-1"]

    async def sample() -> None:
        while True:
            mb, processes = await asyncio.to_thread(tree_pss_mb, worker)
            if mb > peak["mb"]:
                peak["mb"], peak["processes"] = mb, processes
            await asyncio.sleep(delay_s / 10)

    sampler = asyncio.create_task(sample())
    try:
        requests = requests_for(workflow, "memory", steps)
        ended, elapsed = await submit_and_wait(stack.url, requests, timeout_s=10 * delay_s + 60)
    finally:
        sampler.cancel()
    failed = [run for run, how in ended.items() if how != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} runs did not succeed, e.g. {failed[0]}")
    return elapsed


def report_lines(f: dict[str, Any], modes: list[str]) -> list[str]:
    lines = []
    for mode in modes:
        steps, delay = f[f"{mode}_steps"], f[f"{mode}_delay_s"]
        mb, ended = f[f"{mode}_loaded_pss_mb"], f[f"{mode}_all_ended_s"]
        fits = mb <= TARGET_TREE_MB
        in_time = ended <= TARGET_END_FACTOR * delay
        target = f"target <= {TARGET_TREE_MB:g} MB" if mode == "thread" else "no target"
        lines.append(
            f"{mode}: {steps} in-flight steps: worker tree PSS {mb:.0f} MB in "
            f"{f[f'{mode}_loaded_processes']} processes ({'ok' if fits else 'over'}, {target}); "
            f"idle with 1 slot {f[f'{mode}_idle_pss_mb']:.0f} MB in "
            f"{f[f'{mode}_idle_processes']} processes; all runs ended {ended:.1f} s after "
            f"submission ({'ok' if in_time else 'MISSED'}: <= {TARGET_END_FACTOR:g} x "
            f"{delay:g} s)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--modes", default="process,thread", help="isolation modes (both)")
    p.add_argument("--steps", type=int, default=64, help="in-flight steps (64)")
    p.add_argument("--delay", type=float, default=20.0, help="model delay of a step, s (20)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--baseline", type=Path, help="a previous --json output to compare with")
    args = p.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    figures: dict[str, Any] = {}
    for mode in modes:
        figures |= idle(mode)
        figures |= loaded(mode, args.steps, args.delay)
    return report(figures, report_lines(figures, modes), args)


if __name__ == "__main__":
    raise SystemExit(main())
