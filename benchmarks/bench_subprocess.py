"""The ``subprocess`` backend's cost per step against a bare ``python -c "import crewai"``.

A step process must import CrewAI, which dominates its cost; everything else (interpreter
start, the CLI, reading the spec, the mini-crew, writing the result, the driver noticing
the exit) is overhead. The measured side is a one-step run on the ``subprocess`` backend
(file run store), wall time from ``Backend.run`` to its return. Both are measured in turns
in the same run. Target: at most 1.3x::

    python -m benchmarks.bench_subprocess
    python -m benchmarks.bench_subprocess --json > subprocess.json
    python -m benchmarks.bench_subprocess --baseline subprocess.json
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks.figures import interleaved, parser, report, summary_ms, timed_backend_run

TARGET_RATIO = 1.3
INPUTS = {"topic": "benchmarks"}


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its waited-for children so far."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bare_import(env: dict[str, str], cpu: list[float]) -> float:
    """Seconds for ``python -c "import crewai"``; its CPU seconds are appended to ``cpu``."""
    cpu_start, start = cpu_seconds(), time.perf_counter()
    subprocess.run([sys.executable, "-c", "import crewai"], env=env, check=True)
    elapsed = time.perf_counter() - start
    cpu.append(cpu_seconds() - cpu_start)
    return elapsed


def workflow() -> Any:
    """One scripted step."""
    from agentic.contracts import AgentProvider, ScriptedScript, TaskConfig, WorkflowConfig

    provider = AgentProvider(
        id="solo",
        type="scripted",
        role="Writer",
        goal="Write about {topic}",
        backstory="A benchmark agent.",
        script=ScriptedScript(replies=["Done: {topic}."]),
    )
    task = TaskConfig(
        id="solo",
        agent_provider_id="solo",
        description="Write about {topic}.",
        expected_output="A sentence.",
        mcp_providers=[],
    )
    return WorkflowConfig(
        name="bench",
        topic="benchmarks",
        agent_providers=[provider],
        tasks=[task],
        task_sequence=["solo"],
    )


def subprocess_step(wf: Any, store_dir: str, counter: list[int], cpu: list[float]) -> float:
    """Seconds for a one-step run on the subprocess backend (CPU seconds go to ``cpu``)."""
    counter[0] += 1
    return timed_backend_run(
        "subprocess", wf, store_dir, f"bench-{counter[0]}", INPUTS, cpu=cpu, cpu_clock=cpu_seconds
    )


def measure(n: int = 5, warmup: int = 1) -> dict[str, Any]:
    """Median seconds of both sides over ``n`` interleaved repetitions, and their ratio."""
    env = {**os.environ, "CREWAI_DISABLE_TELEMETRY": "true"}
    wf = workflow()
    counter = [0]
    cpu: dict[str, list[float]] = {"import_crewai": [], "subprocess_step": []}
    with tempfile.TemporaryDirectory(prefix="agentic-bench-subprocess-") as store_dir:
        samples = interleaved(
            {
                "import_crewai": lambda: bare_import(env, cpu["import_crewai"]),
                "subprocess_step": lambda: subprocess_step(
                    wf, store_dir, counter, cpu["subprocess_step"]
                ),
            },
            n=n,
            warmup=warmup,
        )
    bare, ours = summary_ms(samples["import_crewai"]), summary_ms(samples["subprocess_step"])
    # Warm-up samples are in the CPU lists too: take the same measured tail.
    bare_cpu = summary_ms(cpu["import_crewai"][-n:])
    ours_cpu = summary_ms(cpu["subprocess_step"][-n:])
    return {
        "import_crewai_cpu_p50_ms": bare_cpu["p50_ms"],
        "subprocess_step_cpu_p50_ms": ours_cpu["p50_ms"],
        "subprocess_cpu_ratio": round(ours_cpu["p50_ms"] / bare_cpu["p50_ms"], 3),
        "n": n,
        "import_crewai_p50_ms": bare["p50_ms"],
        "subprocess_step_p50_ms": ours["p50_ms"],
        "overhead_per_step_ms": round(ours["p50_ms"] - bare["p50_ms"], 3),
        "subprocess_ratio": round(ours["p50_ms"] / bare["p50_ms"], 3),
        "target_ratio": TARGET_RATIO,
    }


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.split("\n", 1)[0]).parse_args(argv)
    figures = measure(n=args.n or 5)
    verdict = "meets" if figures["subprocess_ratio"] <= TARGET_RATIO else "MISSES"
    lines = [
        f'bare python -c "import crewai": p50 {figures["import_crewai_p50_ms"]:.0f} ms',
        f"one subprocess step, end to end: p50 {figures['subprocess_step_p50_ms']:.0f} ms "
        f"({figures['overhead_per_step_ms']:+.0f} ms)",
        f"ratio {figures['subprocess_ratio']:.3f} ({verdict} the target of {TARGET_RATIO:.1f}x; "
        f"n={figures['n']})",
        f"CPU time (less sensitive to other load): {figures['import_crewai_cpu_p50_ms']:.0f} ms "
        f"vs {figures['subprocess_step_cpu_p50_ms']:.0f} ms, "
        f"ratio {figures['subprocess_cpu_ratio']:.3f}",
    ]
    return report(figures, lines, args)


if __name__ == "__main__":
    raise SystemExit(main())
