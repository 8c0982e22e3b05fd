"""The ``inprocess`` backend against a bare CrewAI ``kickoff()`` of the same crew.

Both sides run the same three-task sequential crew with the same scripted LLM (no network,
no delay), in this process, CrewAI already imported. The baseline builds ``Agent``,
``Task`` and ``Crew`` directly and calls ``kickoff(inputs=...)``; the measured side is
``InprocessBackend.run``: materialized specs, every attempt, result and ``run.json`` update
written to a file run store, and every run event. Target: at most 1.10x::

    python -m benchmarks.bench_inprocess
    python -m benchmarks.bench_inprocess --json > inprocess.json
    python -m benchmarks.bench_inprocess --baseline inprocess.json
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from benchmarks.figures import interleaved, parser, report, summary_ms, timed_backend_run

os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")

TARGET_RATIO = 1.10
STEPS = ("research", "write", "edit")
INPUTS = {"topic": "benchmarks"}


def workflow() -> Any:
    """Three sequential scripted steps, each with its own provider."""
    from agentic.contracts import AgentProvider, ScriptedScript, TaskConfig, WorkflowConfig

    providers = [
        AgentProvider(
            id=step,
            type="scripted",
            role=f"{step} agent",
            goal=f"{step} about {{topic}}",
            backstory="A benchmark agent.",
            script=ScriptedScript(replies=[f"{step} output about {{topic}}: " + "words " * 40]),
        )
        for step in STEPS
    ]
    tasks = [
        TaskConfig(
            id=step,
            agent_provider_id=step,
            description=f"Do the {step} part for {{topic}}.",
            expected_output=f"The {step} text.",
            mcp_providers=[],
        )
        for step in STEPS
    ]
    return WorkflowConfig(
        name="bench",
        topic="benchmarks",
        agent_providers=providers,
        tasks=tasks,
        task_sequence=list(STEPS),
    )


def bare_kickoff(wf: Any, cpu: list[float]) -> float:
    """Seconds to build and kick off the crew with CrewAI alone (CPU seconds to ``cpu``)."""
    from crewai import Agent, Crew, Process, Task

    from agentic import runtime

    runtime.setup()
    from agentic.runtime.scripted import build_scripted_llm

    cpu_start, start = time.process_time(), time.perf_counter()
    agents, tasks = [], []
    for step in wf.task_sequence:
        cfg, provider = wf.task(step), wf.provider(wf.task(step).agent_provider_id)
        llm = build_scripted_llm(provider, step_id=step, topic=INPUTS["topic"], inputs=INPUTS)
        agent = Agent(
            role=provider.role,
            goal=provider.goal,
            backstory=provider.backstory,
            llm=llm,
            verbose=False,
            allow_delegation=False,
            max_retry_limit=0,
        )
        tasks.append(
            Task(
                name=step,
                description=cfg.description,
                expected_output=cfg.expected_output,
                agent=agent,
            )
        )
        agents.append(agent)
    crew = Crew(
        agents=agents, tasks=tasks, process=Process.sequential, verbose=False, tracing=False
    )
    crew.kickoff(inputs=dict(INPUTS))
    elapsed = time.perf_counter() - start
    cpu.append(time.process_time() - cpu_start)
    return elapsed


def backend_run(wf: Any, store_dir: str, counter: list[int], cpu: list[float]) -> float:
    """Seconds for ``InprocessBackend.run`` of a fresh run in a file store (CPU to ``cpu``)."""
    counter[0] += 1
    return timed_backend_run("inprocess", wf, store_dir, f"bench-{counter[0]}", INPUTS, cpu=cpu)


def measure(n: int = 30, warmup: int = 3) -> dict[str, Any]:
    """Median seconds of both sides over ``n`` interleaved repetitions, and their ratio."""
    wf = workflow()
    counter = [0]
    cpu: dict[str, list[float]] = {"bare_kickoff": [], "inprocess_run": []}
    with tempfile.TemporaryDirectory(prefix="agentic-bench-inprocess-") as store_dir:
        samples = interleaved(
            {
                "bare_kickoff": lambda: bare_kickoff(wf, cpu["bare_kickoff"]),
                "inprocess_run": lambda: backend_run(wf, store_dir, counter, cpu["inprocess_run"]),
            },
            n=n,
            warmup=warmup,
        )
    bare, ours = summary_ms(samples["bare_kickoff"]), summary_ms(samples["inprocess_run"])
    bare_cpu, ours_cpu = summary_ms(cpu["bare_kickoff"][-n:]), summary_ms(cpu["inprocess_run"][-n:])
    return {
        "bare_kickoff_cpu_p50_ms": bare_cpu["p50_ms"],
        "inprocess_run_cpu_p50_ms": ours_cpu["p50_ms"],
        "inprocess_cpu_ratio": round(ours_cpu["p50_ms"] / bare_cpu["p50_ms"], 3),
        "steps": len(STEPS),
        "n": n,
        "bare_kickoff_p50_ms": bare["p50_ms"],
        "inprocess_run_p50_ms": ours["p50_ms"],
        "overhead_per_step_ms": round((ours["p50_ms"] - bare["p50_ms"]) / len(STEPS), 3),
        "inprocess_ratio": round(ours["p50_ms"] / bare["p50_ms"], 3),
        "bare_kickoff_min_ms": bare["min_ms"],
        "inprocess_run_min_ms": ours["min_ms"],
        "inprocess_min_ratio": round(ours["min_ms"] / bare["min_ms"], 3),
        "target_ratio": TARGET_RATIO,
    }


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.split("\n", 1)[0]).parse_args(argv)
    figures = measure(n=args.n or 30)
    verdict = "meets" if figures["inprocess_ratio"] <= TARGET_RATIO else "MISSES"
    lines = [
        f"bare CrewAI kickoff, {figures['steps']} tasks: "
        f"p50 {figures['bare_kickoff_p50_ms']:.1f} ms",
        f"inprocess backend run, same crew:  p50 {figures['inprocess_run_p50_ms']:.1f} ms "
        f"({figures['overhead_per_step_ms']:+.2f} ms per step)",
        f"ratio {figures['inprocess_ratio']:.3f} ({verdict} the target of {TARGET_RATIO:.2f}x; "
        f"n={figures['n']}); fastest runs: {figures['bare_kickoff_min_ms']:.1f} ms vs "
        f"{figures['inprocess_run_min_ms']:.1f} ms, ratio {figures['inprocess_min_ratio']:.3f}",
        f"CPU time (less sensitive to other load): {figures['bare_kickoff_cpu_p50_ms']:.1f} ms vs "
        f"{figures['inprocess_run_cpu_p50_ms']:.1f} ms, ratio {figures['inprocess_cpu_ratio']:.3f}",
    ]
    return report(figures, lines, args)


if __name__ == "__main__":
    raise SystemExit(main())
