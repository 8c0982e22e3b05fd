"""The knowledge base at history scale: indexing, answering a query, and what it adds to
planning a goal, beside a bare SQLite FTS5 baseline measured in the same run.

A file run store is filled with ``--runs`` finished runs of ``--steps`` steps each (10,000
step outputs by default: 2,000 runs of 5 steps), each output 300 words drawn as natural
text's are: Zipf-distributed over a vocabulary of 20,000 words, the goal's topical words
ranked a few hundred down (so a query word is in some of the outputs, not all). Then:

* **index**: :meth:`KnowledgeIndex.refresh` over the whole store (it lists the runs and
  reads each one's record and attempts) against inserting the same texts into a bare FTS5
  table: what reading the store and the track-record rows add to FTS5's own work;
* **query**: :meth:`KnowledgeIndex.search` for a goal against the same MATCH on the bare
  table (median of ``-n`` queries each);
* **planning**: ``plan_goal`` with the knowledge base against ``--no-kb`` (the scripted
  planner; the index is already up to date, as after any earlier run). Target: the
  knowledge base adds at most 100 ms at 10,000 indexed step outputs::

    python -m benchmarks.bench_kb
    python -m benchmarks.bench_kb --json > kb.json
    python -m benchmarks.bench_kb --baseline kb.json
"""

from __future__ import annotations

import itertools
import json
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.figures import interleaved, parser, report, summary_ms

TARGET_PLANNING_MS = 100.0
WORDS = (
    "agent",
    "workflow",
    "durable",
    "replay",
    "store",
    "budget",
    "provider",
    "fallback",
    "cost",
    "token",
    "model",
    "step",
    "retry",
    "timeout",
    "queue",
    "worker",
    "coordinator",
    "planner",
    "review",
    "knowledge",
    "index",
    "search",
    "vector",
    "database",
    "latency",
    "throughput",
    "memory",
    "process",
    "thread",
    "kubernetes",
    "cluster",
    "stream",
    "message",
    "event",
    "schema",
    "contract",
    "catalog",
    "tool",
    "server",
    "request",
    "answer",
    "summary",
    "brief",
    "research",
    "draft",
)
GOAL = "Write a research brief on durable agent workflows with budgets and fallback providers"


VOCABULARY_SIZE = 20_000
TOPICAL_RANK = 300


def vocabulary(seed: int) -> list[str]:
    """20,000 pseudo-words, most frequent first, the topical ones from rank 300 on."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words: list[str] = []
    seen = set(WORDS)
    while len(words) < VOCABULARY_SIZE - len(WORDS):
        word = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words[:TOPICAL_RANK] + list(WORDS) + words[TOPICAL_RANK:]


def fill_store(store_dir: str, runs: int, steps: int, seed: int = 7) -> list[str]:
    """``runs`` succeeded runs of ``steps`` steps in a file store; every step output."""
    from agentic.contracts import (
        AgentProvider,
        RunRecord,
        RunRequest,
        ScriptedScript,
        StepResult,
        TaskConfig,
        Timing,
        Usage,
        WorkflowConfig,
        utcnow,
    )
    from agentic.store import open_store

    rng = random.Random(seed)
    words = vocabulary(seed)
    zipf = list(itertools.accumulate(1 / rank for rank in range(1, len(words) + 1)))
    store = open_store(store_dir)
    agent = AgentProvider(
        id="writer", type="scripted", role="Writer", goal="Write", backstory="b",
        script=ScriptedScript(replies=["x"]),
    )  # fmt: skip
    ids = [f"s{i}" for i in range(steps)]
    tasks = [
        TaskConfig(id=s, agent_provider_id="writer", description=f"Part {s}", expected_output="x")
        for s in ids
    ]
    wf = WorkflowConfig(name="bench", agent_providers=[agent], tasks=tasks, task_sequence=ids)
    outputs = []
    for n in range(runs):
        run_id = f"bench-{n:05d}"
        now = utcnow()
        texts = [" ".join(rng.choices(words, cum_weights=zipf, k=300)) for _ in ids]
        for step_id, text in zip(ids, texts, strict=True):
            result = StepResult(
                run_id=run_id, step_id=step_id, attempt=1, status="succeeded", output=text,
                usage=Usage(prompt_tokens=300, completion_tokens=300, requests=1),
                timing=Timing(started_at=now, finished_at=now), provider="writer",
            )  # fmt: skip
            store.commit_attempt(result)
        outputs.extend(texts)
        record = RunRecord(
            run_id=run_id, status="succeeded", request=RunRequest(workflow_ref="bench"),
            workflow=wf, backend="inprocess", output=texts[-1], finished_at=now,
        )  # fmt: skip
        store.create_run(record)
    return outputs


def write_catalog(root: Path) -> Path:
    """A writer agent and a scripted planner that plans one step for it."""
    plan = {"steps": [{"id": "a", "agent_provider_id": "writer", "description": "Write",
                       "expected_output": "text"}]}  # fmt: skip
    agents = root / "agent_providers"
    agents.mkdir(parents=True)
    (agents / "writer.yaml").write_text(
        "id: writer\ntype: scripted\nrole: Writer\ngoal: Write\nbackstory: b\n"
        "script: {replies: [done]}\n"
    )
    (agents / "planner.yaml").write_text(
        "id: planner\ntype: scripted\nrole: Planner\ngoal: Plan\nbackstory: b\n"
        f"script: {{replies: [{json.dumps(json.dumps(plan))}]}}\n"
    )
    return root


def bare_index(texts: list[str]) -> tuple[sqlite3.Connection, float]:
    """The same texts in a bare FTS5 table: the connection and the seconds it took."""
    started = time.perf_counter()
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE p USING fts5(text, tokenize = 'porter unicode61')")
    with db:
        db.executemany("INSERT INTO p (text) VALUES (?)", [(t,) for t in texts])
    return db, time.perf_counter() - started


def measure(runs: int, steps: int, n: int, warmup: int = 1) -> dict[str, Any]:
    from agentic.contracts import PlannerOptions, RunRequest
    from agentic.knowledge import KnowledgeIndex, fts_query, open_index
    from agentic.planning import plan_goal
    from agentic.settings import Settings
    from agentic.store import open_store

    with tempfile.TemporaryDirectory(prefix="agentic-bench-kb-") as tmp:
        store_dir = f"{tmp}/store"
        texts = fill_store(store_dir, runs, steps)
        store = open_store(store_dir)
        bare, bare_s = bare_index(texts)

        started = time.perf_counter()
        with KnowledgeIndex(f"{tmp}/index.sqlite3") as index:
            index.refresh(store)
            index_s = time.perf_counter() - started
            indexed = index.count("step")

            query = fts_query(GOAL)

            def ours() -> float:
                t = time.perf_counter()
                index.search(GOAL, limit=5)
                return time.perf_counter() - t

            def baseline() -> float:
                t = time.perf_counter()
                bare.execute(
                    "SELECT text FROM p WHERE p MATCH ? ORDER BY bm25(p) LIMIT 5", (query,)
                ).fetchall()
                return time.perf_counter() - t

            queries = interleaved({"kb": ours, "bare": baseline}, n=n * 10, warmup=warmup)

        config = write_catalog(Path(tmp) / "config")
        settings = Settings(
            config_dir=str(config), run_store_url=store_dir, kb_index_path=f"{tmp}/index.sqlite3"
        )
        from agentic.catalog import load_catalog

        catalog = load_catalog([str(config)])
        open_index(settings, store).close()  # up to date, as after any earlier run

        def planning(knowledge: bool) -> float:
            request = RunRequest(goal=GOAL, planner=PlannerOptions(knowledge=knowledge))
            t = time.perf_counter()
            plan_goal(request, catalog=catalog, settings=settings, store=store)
            return time.perf_counter() - t

        plans = interleaved(
            {"with_kb": lambda: planning(True), "without_kb": lambda: planning(False)},
            n=n,
            warmup=warmup,
        )
    added_ms = (statistics.median(plans["with_kb"]) - statistics.median(plans["without_kb"])) * 1000
    return {
        "runs": runs,
        "step_outputs": indexed,
        "index_s": round(index_s, 3),
        "index_bare_fts5_s": round(bare_s, 3),
        "query_kb_p50_ms": summary_ms(queries["kb"])["p50_ms"],
        "query_bare_fts5_p50_ms": summary_ms(queries["bare"])["p50_ms"],
        "planning_with_kb_p50_ms": summary_ms(plans["with_kb"])["p50_ms"],
        "planning_without_kb_p50_ms": summary_ms(plans["without_kb"])["p50_ms"],
        "planning_added_ms": round(added_ms, 3),
        "planning_target_ms": TARGET_PLANNING_MS,
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=2000, help="finished runs in the store")
    p.add_argument("--steps", type=int, default=5, help="steps per run")
    args = p.parse_args(argv)
    figures = measure(args.runs, args.steps, n=args.n or 5)
    lines = [
        f"indexing {figures['step_outputs']:,} step outputs of {figures['runs']:,} runs: "
        f"{figures['index_s']:.2f} s (bare FTS5 insert of the same texts: "
        f"{figures['index_bare_fts5_s']:.2f} s)",
        f"a query: {figures['query_kb_p50_ms']:.2f} ms (bare FTS5: "
        f"{figures['query_bare_fts5_p50_ms']:.2f} ms)",
        f"planning a goal: {figures['planning_with_kb_p50_ms']:.1f} ms with the knowledge base, "
        f"{figures['planning_without_kb_p50_ms']:.1f} ms without: "
        f"+{figures['planning_added_ms']:.1f} ms (target <= {TARGET_PLANNING_MS:.0f} ms)",
    ]
    return report(figures, lines, args)


if __name__ == "__main__":
    raise SystemExit(main())
