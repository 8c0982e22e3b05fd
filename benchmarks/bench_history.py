"""What a long history costs: the runs index (``agentic.store.index``) against the store's size.

Three figures, each at a small and a large size measured in the same run (the ratio is the
target; the absolute numbers depend on the machine):

(a) **coordinator start-up** on a file store holding ``--small`` (100) and ``--large``
    (10,000) finished runs: from starting ``agentic coordinator`` (the real command, through
    ``benchmarks.coordinator_probe``) to the answer of its first submit, and its resident
    memory then. Targets: large <= 1.5x small; RSS within 10 MB.
(b) **listing**: ``agentic runs --limit 20`` (the command, in a fresh interpreter) and the
    listing itself in this process (``agentic.cli.details.list_runs``), on the same stores,
    and on the moto S3 server with ``--s3-small`` (100) and ``--s3-large`` (1,000) runs.
    Target: large <= 1.5x small.
(c) **restore**: a coordinator started on a store with ``--open`` (5,000) unfinished
    ``nats`` runs: seconds from its submit subscription (ready to answer) to the answer of
    a submit, and until every open run is restored (each publishes its first
    ``step_ready`` again). Target: the submit is answered within 2 s.

The runs are written through the store's own API (as runs write them), with creation times
spread over the last 60 days. Usage::

    python -m benchmarks.bench_history
    python -m benchmarks.bench_history --large 2000 --open 500 --s3-large 300   # a quick look
    python -m benchmarks.bench_history --json > history.json
    python -m benchmarks.bench_history --baseline history.json
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.bench_nats_pipeline import ask_probe
from benchmarks.figures import parser, report
from benchmarks.nats_stack import requests_for, scripted_workflow

TARGET_RATIO = 1.5
TARGET_RSS_DELTA_MB = 10.0
TARGET_SUBMIT_DURING_RESTORE_S = 2.0
STEPS = 5
SPREAD = timedelta(days=60)


# --- stores ----------------------------------------------------------------------------------


def fill(
    store_url: str, count: int, *, status: str, backend: str = "inprocess", **options: Any
) -> None:
    """``count`` runs of a 5-step workflow in the store: ended ones with every step
    succeeded, or unfinished ``running`` ones that no step has started."""
    from agentic.contracts import RunRecord, RunRequest, StepState, utcnow
    from agentic.store import open_store

    store = open_store(store_url, **options)
    wf = scripted_workflow(STEPS, name="history")
    now = utcnow()
    step_status = "succeeded" if status == "succeeded" else "pending"
    steps = [StepState(step_id=s, status=step_status, attempt=1) for s in wf.task_sequence]
    for i in range(count):
        created = now - SPREAD * (1 - i / max(count, 1))
        run_id = f"hist-{status}-{i:05d}"
        record = RunRecord(
            run_id=run_id,
            status=status,  # type: ignore[arg-type]
            request=RunRequest(run_id=run_id, workflow=wf, inputs={"topic": "history"}),
            workflow=wf,
            inputs={"topic": "history"},
            backend=backend,  # type: ignore[arg-type]
            created_at=created,
            updated_at=created + timedelta(seconds=12),
            finished_at=created + timedelta(seconds=12) if status == "succeeded" else None,
            steps=steps,
            output="The answer." if status == "succeeded" else None,
        )
        store.create_run(record)


# --- (a) and (c): the coordinator ------------------------------------------------------------


class Coordinator:
    """``agentic coordinator`` (through the probe) on an embedded nats-server and a store."""

    def __init__(self, tmp: Path, store_url: str) -> None:
        from agentic.bus import EmbeddedNats

        self.report = tmp / "report.json"
        self.server = EmbeddedNats(store_dir=tmp / "js")
        self.store_url = store_url
        self.probe: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Coordinator:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.server.__exit__(None, None, None)

    def start(self) -> float:
        """Start the coordinator; returns the monotonic time it was started at."""
        env = {
            **os.environ,
            "AGENTIC_ALLOW_INLINE_PROVIDERS": "true",  # the runs define their provider
            "AGENTIC_NATS_URL": self.server.url,
            "AGENTIC_RUN_STORE_URL": self.store_url,
            "AGENTIC_LOG_LEVEL": os.environ.get("AGENTIC_LOG_LEVEL", "ERROR"),
        }
        started = time.monotonic()
        self.probe = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.coordinator_probe", str(self.report)], env=env
        )
        return started

    def wait_ready(self, timeout_s: float = 120) -> float:
        """Wait until the coordinator subscribes to submits; the monotonic time it did."""
        from agentic import names
        from agentic.cli.process_stack import has_interest

        deadline = time.monotonic() + timeout_s
        while not has_interest(self.server.monitor_url, names.SUBMIT_SUBJECT):
            assert self.probe is not None
            if self.probe.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the coordinator did not start")
            time.sleep(0.005)
        return time.monotonic()

    def submit(self, prefix: str) -> float:
        """Submit one 1-step run and wait for the answer; the monotonic time of the answer."""
        from agentic.bus import connect
        from agentic.bus.requests import submit_run
        from agentic.settings import Settings

        async def go() -> None:
            settings = Settings(nats_url=self.server.url)
            nc = await connect(settings, name="agentic-bench")
            try:
                (request,) = requests_for(scripted_workflow(1, name="probe"), prefix, 1)
                reply = await submit_run(
                    nc, request, max_bytes=settings.max_message_bytes, timeout=60
                )
                if not reply.ok:
                    raise RuntimeError(f"the submit was refused: {reply.error}")
            finally:
                await nc.close()

        asyncio.run(go())
        return time.monotonic()

    def rss_mb(self) -> float:
        assert self.probe is not None
        return float(ask_probe(self.probe, self.report)["rss_mb"])

    def stop(self) -> None:
        if self.probe is not None and self.probe.poll() is None:
            self.probe.send_signal(signal.SIGTERM)
            self.probe.wait(60)
        self.probe = None


def startup(tmp: Path, store_url: str) -> dict[str, float]:
    """Start-up to the first answered submit, and RSS after it."""
    with Coordinator(tmp, store_url) as coordinator:
        started = coordinator.start()
        coordinator.wait_ready()
        answered = coordinator.submit("startup")
        return {"startup_s": answered - started, "rss_mb": coordinator.rss_mb()}


def restore(tmp: Path, store_url: str, open_runs: int) -> dict[str, float]:
    """Submit answered while ``open_runs`` unfinished runs are restored; time to restore all."""
    with Coordinator(tmp, store_url) as coordinator:
        with EventCounter(coordinator.server.url, "step_ready", prefix="hist-running-") as counter:
            started = coordinator.start()
            ready = coordinator.wait_ready()
            answered = coordinator.submit("during-restore")
            restored = counter.wait_for(open_runs, timeout_s=900)
        return {
            "restore_ready_s": ready - started,
            "restore_submit_answer_s": answered - ready,
            "restore_all_s": restored - ready,
            "restore_rss_mb": coordinator.rss_mb(),
        }


class EventCounter:
    """Counts the runs (ids starting with ``prefix``) that published an ``event_type``
    event, from an ordered consumer of new events run in a thread of its own."""

    def __init__(self, url: str, event_type: str, *, prefix: str) -> None:
        self.url, self.event_type, self.prefix = url, event_type, prefix
        self.runs: set[str] = set()
        self._subscribed = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._follow()), daemon=True)

    def __enter__(self) -> EventCounter:
        self._thread.start()
        if not self._subscribed.wait(30):
            raise RuntimeError("could not follow the events")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def wait_for(self, count: int, *, timeout_s: float) -> float:
        """Wait until ``count`` runs published the event; the monotonic time they had."""
        deadline = time.monotonic() + timeout_s
        while len(self.runs) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(self.runs)} of {count} runs were restored")
            time.sleep(0.01)
        return time.monotonic()

    async def _follow(self) -> None:
        from nats.js.api import DeliverPolicy

        from agentic import names
        from agentic.bus import connect, provision
        from agentic.settings import Settings

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        nc = await connect(Settings(nats_url=self.url), name="agentic-bench-events")

        async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
            if names.event_type_from_subject(msg.subject) != self.event_type:
                return
            run_id = names.run_id_from_events_subject(msg.subject)
            if run_id.startswith(self.prefix):
                self.runs.add(run_id)

        settings = Settings(nats_url=self.url)
        await provision(nc.jetstream(), settings)  # as the coordinator will: the same config
        sub = await nc.jetstream().subscribe(
            names.EVENTS_SUBJECTS,
            stream=names.EVENTS_STREAM,
            cb=on_event,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.NEW,
        )
        self._subscribed.set()
        await self._stop.wait()
        await sub.unsubscribe()
        await nc.close()


# --- (b): listing ----------------------------------------------------------------------------


def listing_in_process(store_url: str, n: int = 5, **options: Any) -> float:
    """Best of ``n`` listings of the newest 20 runs (fewer in a smaller store), in seconds
    (a fresh store object each time: nothing cached between them)."""
    from agentic.cli.details import list_runs
    from agentic.store import open_store

    best = float("inf")
    for _ in range(n):
        start = time.perf_counter()
        store = open_store(store_url, **options)
        listed = list_runs(store, limit=20)
        best = min(best, time.perf_counter() - start)
        if len(listed.runs) != min(20, len(store.list_run_ids())):
            raise RuntimeError(f"listed {len(listed.runs)} runs")
    return best


def listing_cli(store_url: str, n: int = 5) -> float:
    """Best of ``n`` runs of ``agentic runs --limit 20`` in a fresh interpreter, seconds
    (the interpreter's start-up is most of it: noisy on a loaded machine)."""
    best = float("inf")
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "agentic", "runs", "--limit", "20", "--store", store_url],
            check=True,
            capture_output=True,
        )
        best = min(best, time.perf_counter() - start)
    return best


def s3_listing(tmp: Path, small: int, large: int) -> dict[str, float]:
    """In-process listing on the moto S3 server at both sizes."""
    from tests.fixtures.s3 import running_s3_server

    with running_s3_server(tmp / "moto.log") as server:
        out = {}
        for label, count in (("small", small), ("large", large)):
            url = server.unique_url()
            fill(url, count, status="succeeded", **server.storage_options)
            listing_in_process(url, n=1, **server.storage_options)  # builds nothing: warms up
            out[f"s3_list_{label}_ms"] = 1000 * listing_in_process(url, **server.storage_options)
        return out


# --- main ------------------------------------------------------------------------------------


def measure(args: Any) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "small_runs": args.small,
        "large_runs": args.large,
        "open_runs": args.open,
        "s3_small_runs": args.s3_small,
        "s3_large_runs": args.s3_large,
    }
    with tempfile.TemporaryDirectory(prefix="agentic-bench-history-") as tmp_dir:
        tmp = Path(tmp_dir)
        for label, count in (("small", args.small), ("large", args.large)):
            store_url = str(tmp / f"store-{label}")
            filling = time.perf_counter()
            fill(store_url, count, status="succeeded")
            figures[f"fill_{label}_s"] = round(time.perf_counter() - filling, 1)
            up = startup(tmp / f"coord-{label}", store_url)
            figures[f"startup_{label}_ms"] = round(1000 * up["startup_s"], 1)
            figures[f"startup_rss_{label}_mb"] = up["rss_mb"]
            figures[f"list_{label}_ms"] = round(1000 * listing_in_process(store_url), 2)
            figures[f"runs_cli_{label}_ms"] = round(1000 * listing_cli(store_url, args.cli_n), 1)
        store_url = str(tmp / "store-open")
        fill(store_url, args.open, status="running", backend="nats")
        restored = restore(tmp / "coord-open", store_url, args.open)
        figures.update({k: round(v, 3) for k, v in restored.items()})
        if args.s3_large:
            s3 = s3_listing(tmp, args.s3_small, args.s3_large)
            figures.update({k: round(v, 2) for k, v in s3.items()})
    for key in ("startup", "list", "runs_cli", "s3_list"):
        small, large = figures.get(f"{key}_small_ms"), figures.get(f"{key}_large_ms")
        if small and large:
            figures[f"{key}_ratio"] = round(large / small, 2)
    figures["startup_rss_delta_mb"] = round(
        figures["startup_rss_large_mb"] - figures["startup_rss_small_mb"], 1
    )
    return figures


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def compared(f: dict[str, Any], key: str, digits: int = 0) -> str:
    """``small ms vs large ms (ratio: verdict)`` of a figure measured at both sizes."""
    small, large, ratio = f[f"{key}_small_ms"], f[f"{key}_large_ms"], f[f"{key}_ratio"]
    ok = verdict(ratio <= TARGET_RATIO)
    return f"{small:.{digits}f} ms vs {large:.{digits}f} ms ({ratio:.2f}x: {ok})"


def report_lines(f: dict[str, Any]) -> list[str]:
    sizes = f"{f['small_runs']:,} vs {f['large_runs']:,} finished runs (file store)"
    rss_ok = verdict(f["startup_rss_delta_mb"] <= TARGET_RSS_DELTA_MB)
    lines = [
        f"targets: large <= {TARGET_RATIO}x small; RSS within {TARGET_RSS_DELTA_MB:g} MB; "
        f"a submit during a restore answered within {TARGET_SUBMIT_DURING_RESTORE_S:g} s",
        f"(a) coordinator start-up to first answered submit, {sizes}: " + compared(f, "startup"),
        f"    RSS after start-up {f['startup_rss_small_mb']:.1f} MB vs "
        f"{f['startup_rss_large_mb']:.1f} MB (+{f['startup_rss_delta_mb']:.1f} MB: {rss_ok})",
        f"(b) listing the newest 20, {sizes}: " + compared(f, "list", 2),
        "    `agentic runs --limit 20` in a fresh interpreter: " + compared(f, "runs_cli"),
    ]
    if "s3_list_ratio" in f:
        lines.append(
            f"    on moto S3, {f['s3_small_runs']:,} vs {f['s3_large_runs']:,} runs: "
            + compared(f, "s3_list", 1)
        )
    ok = verdict(f["restore_submit_answer_s"] <= TARGET_SUBMIT_DURING_RESTORE_S)
    lines.append(
        f"(c) restart with {f['open_runs']:,} unfinished runs: ready {f['restore_ready_s']:.2f} s "
        f"after start; a submit answered {f['restore_submit_answer_s']:.3f} s after ready "
        f"({ok}); every run restored {f['restore_all_s']:.1f} s after ready; "
        f"RSS {f['restore_rss_mb']:.1f} MB"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--small", type=int, default=100)
    p.add_argument("--large", type=int, default=10_000)
    p.add_argument("--open", type=int, default=5_000)
    p.add_argument("--s3-small", type=int, default=100)
    p.add_argument("--s3-large", type=int, default=1_000, help="0: skip S3")
    p.add_argument("--cli-n", type=int, default=5, help="runs of `agentic runs` per size")
    args = p.parse_args(argv)
    figures = measure(args)
    return report(figures, report_lines(figures), args)


if __name__ == "__main__":
    raise SystemExit(main())
