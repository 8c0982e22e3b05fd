"""The ``subprocess`` backend against ``inprocess``, each as a user starts it: a fresh process.

Both sides run the same three-step sequential scripted workflow (no network, no delay) in
a fresh Python process that imports agentic, runs the workflow on its backend with a file
run store, and exits, as ``agentic run`` does. ``inprocess`` imports CrewAI once, in that
process; ``subprocess`` forks each step from the warm runtime, which imports CrewAI once
for the run (before it, every step process imported CrewAI itself: three imports instead
of one). Measured in turns in the same run; wall time from start to exit of the process.
Target: ``subprocess`` at most 1.5x ``inprocess``::

    python -m benchmarks.bench_subprocess
    python -m benchmarks.bench_subprocess --json > subprocess.json
    python -m benchmarks.bench_subprocess --baseline subprocess.json
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks.figures import interleaved, parser, report, summary_ms

TARGET_RATIO = 1.5
INPUTS = {"topic": "benchmarks"}
BACKENDS = ("inprocess", "subprocess")


def one_run(backend: str, store_dir: str, run_id: str) -> None:
    """The measured child: one run of the three-step workflow on ``backend``."""
    from benchmarks.bench_inprocess import workflow
    from benchmarks.figures import timed_backend_run

    timed_backend_run(backend, workflow(), store_dir, run_id, INPUTS, cpu=[])


def timed_child(backend: str, store_dir: str, counter: list[int]) -> float:
    """Seconds from starting a fresh interpreter that runs the workflow to its exit."""
    counter[0] += 1
    code = (
        "import sys; from benchmarks.bench_subprocess import one_run; "
        "one_run(sys.argv[1], sys.argv[2], sys.argv[3])"
    )
    env = {**os.environ, "CREWAI_DISABLE_TELEMETRY": "true"}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code, backend, store_dir, f"bench-{backend}-{counter[0]}"],
        env=env,
        check=True,
    )
    return time.perf_counter() - start


def measure(n: int = 5, warmup: int = 1) -> dict[str, Any]:
    """Median seconds of both sides over ``n`` interleaved repetitions, and their ratio."""
    counter = [0]
    with tempfile.TemporaryDirectory(prefix="agentic-bench-subprocess-") as store_dir:
        samples = interleaved(
            {b: (lambda b=b: timed_child(b, store_dir, counter)) for b in BACKENDS},  # type: ignore[misc]
            n=n,
            warmup=warmup,
        )
    inprocess, ours = summary_ms(samples["inprocess"]), summary_ms(samples["subprocess"])
    return {
        "n": n,
        "inprocess_run_p50_ms": inprocess["p50_ms"],
        "subprocess_run_p50_ms": ours["p50_ms"],
        "subprocess_ratio": round(ours["p50_ms"] / inprocess["p50_ms"], 3),
        "target_ratio": TARGET_RATIO,
    }


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.split("\n", 1)[0]).parse_args(argv)
    figures = measure(n=args.n or 5)
    verdict = "meets" if figures["subprocess_ratio"] <= TARGET_RATIO else "MISSES"
    lines = [
        f"3-step workflow in a fresh process, inprocess: p50 "
        f"{figures['inprocess_run_p50_ms']:.0f} ms",
        f"the same on subprocess (warm runtime): p50 {figures['subprocess_run_p50_ms']:.0f} ms",
        f"ratio {figures['subprocess_ratio']:.3f} ({verdict} the target of {TARGET_RATIO:.1f}x; "
        f"n={figures['n']})",
    ]
    return report(figures, lines, args)


if __name__ == "__main__":
    raise SystemExit(main())
