"""What the web console costs (``agentic console``, docs/console.md).

Two figures, measured in the same run:

(a) **runs page**: the answer time of ``GET /`` (50 newest runs, with their tokens and cost)
    on a file store holding ``--runs`` (10,000) finished runs, through the whole app
    (guard, index, usage, template) in this process; also a page filtered by workflow and
    an exact id search. Target: the default page under 300 ms.
(b) **following a live run**: what the console adds to a step transition it follows, per
    event: the fold (:func:`agentic.contracts.fold.apply`) and the message it sends
    (:func:`agentic.console.live.advance`), over the events of a ``--steps`` step run; and
    one look of the store follower (read ``run.json``, fold, encode). Then, on a real
    ``nats`` stack (nats-server, a coordinator, a worker), step k's end to step k+1's start
    of sequential runs, run by run in turn alone and followed by ``--followers`` live run
    pages (the console's NATS follower): the difference is what following adds. Target:
    < 1 ms per transition.

The runs are written through the store's own API (``benchmarks.bench_history.fill``).
Usage::

    python -m benchmarks.bench_console
    python -m benchmarks.bench_console --runs 2000 --json
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.figures import parser, report

TARGET_PAGE_MS = 300.0
STEPS = 5  # of benchmarks.bench_history.fill's workflow
TARGET_FOLLOW_MS = 1.0


def with_attempts(store_url: str, count: int, shown: int = 50) -> None:
    """Give the ``shown`` newest runs of ``fill`` an attempt and a committed result per
    step, with usage: what the page reads (once per finished run) for its totals."""
    from agentic.contracts import StepResult, Timing, Usage, utcnow
    from agentic.store import open_store

    store = open_store(store_url)
    now = utcnow()
    for i in range(max(count - shown, 0), count):
        run_id = f"hist-succeeded-{i:05d}"
        for s in range(1, STEPS + 1):
            result = StepResult(
                run_id=run_id,
                step_id=f"s{s:02d}",
                attempt=1,
                status="succeeded",
                output="An output of a few words.",
                usage=Usage(prompt_tokens=120, completion_tokens=40, cost_usd=0.0004),
                timing=Timing(started_at=now, finished_at=now),
            )
            store.write_attempt(result)
            store.commit_result(result)


def runs_page(store_url: str, n: int) -> dict[str, float]:
    """Median answer times of the runs page, in milliseconds."""
    from starlette.testclient import TestClient

    from agentic.console.app import create_app
    from agentic.settings import Settings

    app = create_app(Settings(run_store_url=store_url))
    timed: dict[str, list[float]] = {"page": [], "filtered": [], "search": []}
    paths = {
        "page": "/",
        "filtered": "/?workflow=history&status=succeeded",
        "search": "/?q=hist-succeeded-00007",
    }
    with TestClient(app, base_url="http://127.0.0.1") as client:
        started = time.perf_counter()
        assert client.get("/").status_code == 200
        first = (time.perf_counter() - started) * 1000
        for _ in range(n):
            for name, path in paths.items():
                started = time.perf_counter()
                answer = client.get(path)
                timed[name].append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, answer.text[:200]
    return {
        "runs_page_first_ms": round(first, 2),
        "runs_page_ms": round(statistics.median(timed["page"]), 2),
        "runs_page_filtered_ms": round(statistics.median(timed["filtered"]), 2),
        "runs_page_search_ms": round(statistics.median(timed["search"]), 2),
    }


def follow_cost(steps: int, repeats: int) -> dict[str, float]:
    """Microseconds the console spends per followed event, and per store look."""
    from agentic.console.live import advance, initial_view
    from agentic.contracts import RunEvent, RunRecord, RunRequest, StepState, utcnow
    from agentic.contracts.events import (
        EventWorker,
        StepReadyData,
        StepStartedData,
        StepSucceededData,
    )
    from agentic.contracts.fold import RunView

    ids = [f"s{i:03d}" for i in range(steps)]
    record = RunRecord(
        run_id="follow-1",
        status="running",
        request=RunRequest(run_id="follow-1", workflow_ref="bench"),
        backend="nats",
        steps=[StepState(step_id=s, status="pending") for s in ids],
    )
    now = utcnow()
    worker = EventWorker(host="bench", pid=1)
    events: list[RunEvent] = []
    for i, step in enumerate(ids):
        # What a coordinator and a worker publish for one attempt.
        datas = (
            StepReadyData(prior_steps=ids[i - 1 : i], provider="bench_agent"),
            StepStartedData(worker=worker, step_pid=2, delivery=1, pool="default"),
            StepSucceededData(output_chars=120, worker=worker, duration_s=0.5),
        )
        for data in datas:
            events.append(
                RunEvent(
                    run_id="follow-1",
                    seq=len(events),
                    type=data.type,
                    ts=now + timedelta(milliseconds=i),
                    step_id=step,
                    attempt=1,
                    data=data.as_data(),
                )
            )
    per_event: list[float] = []
    for _ in range(repeats):
        view = initial_view(record)
        started = time.perf_counter()
        for event in events:
            view, _message = advance(view, [event])
        per_event.append((time.perf_counter() - started) / len(events) * 1e6)
    look: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        from agentic.console.live import view_json
        from agentic.store import open_store

        store = open_store(str(Path(tmp) / "store"))
        store.create_run(record)
        for _ in range(repeats * 10):
            started = time.perf_counter()
            found = store.readable_run("follow-1")
            assert found is not None
            json.dumps(view_json(RunView.of(found)))
            look.append((time.perf_counter() - started) * 1e6)
    return {
        "follow_event_us": round(statistics.median(per_event), 2),
        "follow_event_ms": round(statistics.median(per_event) / 1000, 4),
        "follow_store_look_us": round(statistics.median(look), 1),
        "follow_steps": steps,
    }


def followed_transitions(steps: int, runs: int, followers: int) -> dict[str, Any]:
    """Step-to-step transitions (step k's ``finished_at`` to step k+1's ``started_at``) of
    sequential ``steps``-step runs on one ``nats`` stack, run by run in turn alone and
    followed by ``followers`` live run pages (the console's own follower,
    :func:`agentic.console.live.follow_nats`, on one connection as the console has)."""
    import asyncio
    from itertools import pairwise

    from benchmarks.nats_stack import requests_for, running_stack, scripted_workflow, warm_up

    wf = scripted_workflow(steps, name="followed")
    gaps: dict[str, list[float]] = {"alone": [], "followed": []}
    sent = 0
    with running_stack(workers=1, secure=False) as stack:
        warm_up(stack.url, workers=1)
        for i in range(runs):
            for kind in ("alone", "followed"):
                request = requests_for(wf, f"{kind}{i}", 1)[0]
                n = followers if kind == "followed" else 0
                results, messages = asyncio.run(_followed_run(stack, request, n))
                sent += messages
                gaps[kind] += [
                    (b.timing.started_at - a.timing.finished_at).total_seconds() * 1000
                    for a, b in pairwise(results)
                ]
    alone, followed = statistics.median(gaps["alone"]), statistics.median(gaps["followed"])
    return {
        "transition_alone_p50_ms": round(alone, 3),
        "transition_followed_p50_ms": round(followed, 3),
        "follow_added_p50_ms": round(followed - alone, 3),
        "followers": followers,
        "follow_messages": sent,
        "transitions_n": len(gaps["alone"]),
    }


async def _followed_run(stack: Any, request: Any, followers: int) -> tuple[list[Any], int]:
    """Run ``request`` on ``stack`` with ``followers`` followers; its step results and how
    many messages the followers sent."""
    import asyncio

    from agentic.bus import connect
    from agentic.console.live import follow_nats
    from agentic.contracts import RunRecord, StepState
    from agentic.settings import Settings
    from agentic.store import open_store
    from benchmarks.nats_stack import submit_and_wait

    settings = Settings(nats_url=stack.url, run_store_url=stack.store_url)
    store = open_store(stack.store_url)
    wf = request.workflow
    record = RunRecord(
        run_id=request.run_id,
        request=request,
        workflow=wf,
        backend="nats",
        steps=[StepState(step_id=s) for s in wf.task_sequence],
    )
    nc = await connect(settings, name="bench-console")

    async def follow() -> int:
        return sum([1 async for _ in follow_nats(nc, settings, store, record)])

    try:
        tasks = [asyncio.create_task(follow()) for _ in range(followers)]
        ended, _ = await submit_and_wait(stack.url, [request], timeout_s=120)
        if ended[request.run_id] != "succeeded":
            raise RuntimeError(f"run {request.run_id} {ended}")
        counts = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        await nc.close()
    results = [store.read_result(request.run_id, s) for s in wf.task_sequence]
    return results, sum(counts)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=10_000, help="finished runs in the store")
    p.add_argument("--steps", type=int, default=20, help="steps of the followed run")
    p.add_argument(
        "--nats-runs", type=int, default=4, help="runs alone and followed on nats (0: skip)"
    )
    p.add_argument("--followers", type=int, default=3, help="run pages following a run")
    args = p.parse_args(argv)
    n = args.n or 20
    from benchmarks.bench_history import fill

    with tempfile.TemporaryDirectory() as tmp:
        store_url = str(Path(tmp) / "store")
        started = time.perf_counter()
        fill(store_url, args.runs, status="succeeded")
        with_attempts(store_url, args.runs)
        filled_s = time.perf_counter() - started
        figures: dict[str, Any] = {"runs": args.runs, "fill_s": round(filled_s, 1)}
        figures |= runs_page(store_url, n)
    figures |= follow_cost(args.steps, max(n // 4, 3))
    if args.nats_runs:
        figures |= followed_transitions(args.steps, args.nats_runs, args.followers)
    lines = [
        f"runs page with {args.runs} runs in the store: {figures['runs_page_ms']:.1f} ms "
        f"(median of {n}; first, reading the shown runs' attempts: "
        f"{figures['runs_page_first_ms']:.1f} ms; target < "
        f"{TARGET_PAGE_MS:.0f} ms)",
        f"  filtered by workflow and status: {figures['runs_page_filtered_ms']:.1f} ms; "
        f"exact id search: {figures['runs_page_search_ms']:.1f} ms",
        f"following a live run: {figures['follow_event_us']:.1f} us per step transition "
        f"(fold + message, {args.steps}-step run; target < {TARGET_FOLLOW_MS:.0f} ms); "
        f"one look of the store follower: {figures['follow_store_look_us']:.0f} us",
    ]
    if args.nats_runs:
        lines.append(
            f"  on nats, step to next step: {figures['transition_alone_p50_ms']:.2f} ms alone, "
            f"{figures['transition_followed_p50_ms']:.2f} ms followed by {args.followers} run "
            f"pages (p50 of {figures['transitions_n']}): "
            f"{figures['follow_added_p50_ms']:+.2f} ms (target < {TARGET_FOLLOW_MS:.0f} ms)"
        )
    return report(figures, lines, args)


if __name__ == "__main__":
    raise SystemExit(main())
