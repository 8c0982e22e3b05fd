"""Small helpers shared by the local-backend benchmarks: medians, ratios, the CLI options.

Every benchmark prints its own figure next to a baseline measured in the same run (the
ratio is what matters on a shared machine), and can save its figures as JSON and compare
them with a saved run (``--baseline FILE``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def summary_ms(samples_s: list[float]) -> dict[str, float]:
    """Median and minimum of samples in seconds, as milliseconds."""
    return {
        "p50_ms": round(statistics.median(samples_s) * 1000, 3),
        "min_ms": round(min(samples_s) * 1000, 3),
    }


def interleaved(
    measures: Mapping[str, Callable[[], float]], *, n: int, warmup: int
) -> dict[str, list[float]]:
    """Run each measure ``warmup + n`` times, taking turns, so load spikes hit all alike."""
    samples: dict[str, list[float]] = {name: [] for name in measures}
    for i in range(warmup + n):
        for name, measure in measures.items():
            seconds = measure()
            if i >= warmup:
                samples[name].append(seconds)
    return samples


def compare_lines(now: Mapping[str, Any], before: Mapping[str, Any]) -> list[str]:
    """One line per millisecond figure or ratio present in both runs."""
    lines = []
    for key, value in now.items():
        old = before.get(key)
        if not isinstance(value, int | float) or not isinstance(old, int | float) or old <= 0:
            continue
        if key.endswith("_ms") or key.endswith("ratio"):
            lines.append(f"{key}: now {value:.3f}, baseline file {old:.3f} ({value / old:.2f}x)")
    return lines


def parser(description: str) -> argparse.ArgumentParser:
    """The options every local benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("-n", type=int, help="measured repetitions")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--baseline", type=Path, help="a previous --json output to compare with")
    return p


def report(figures: dict[str, Any], lines: list[str], args: argparse.Namespace) -> int:
    """Print ``figures`` (as JSON with ``--json``) and the comparison with ``--baseline``."""
    before = json.loads(args.baseline.read_text()) if args.baseline else None
    if args.json:
        out = dict(figures)
        if before is not None:
            out["compared_with_baseline_file"] = {
                k: round(v / before[k], 3)
                for k, v in figures.items()
                if isinstance(v, int | float)
                and isinstance(before.get(k), int | float)
                and before[k] > 0
            }
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    print("\n".join(lines))
    if before is not None:
        print("\n".join(compare_lines(figures, before)))
    return 0


def timed_backend_run(
    backend: str,
    wf: Any,
    store_dir: str,
    run_id: str,
    inputs: Mapping[str, str],
    *,
    cpu: list[float],
    cpu_clock: Callable[[], float] = time.process_time,
) -> float:
    """Seconds for one run of ``wf`` on ``backend`` in a file store; its CPU time (by
    ``cpu_clock``) is appended to ``cpu``.

    Raises:
        RuntimeError: the run did not succeed (a benchmark of a failing run means nothing).
    """
    from agentic.backends import get_backend
    from agentic.contracts import RunRecord, RunRequest
    from agentic.settings import Settings
    from agentic.store import open_store

    store = open_store(store_dir)
    record = RunRecord(
        run_id=run_id,
        request=RunRequest(workflow=wf, inputs=dict(inputs)),
        workflow=wf,
        inputs=dict(inputs),
        backend=backend,
    )
    store.create_run(record)
    runner = get_backend(backend)
    cpu_start, start = cpu_clock(), time.perf_counter()
    final = runner.run(record, store, Settings(), lambda event: None)
    elapsed = time.perf_counter() - start
    cpu.append(cpu_clock() - cpu_start)
    if final.status != "succeeded":
        raise RuntimeError(f"benchmark run failed: {final.error}")
    return elapsed
