"""Kubernetes: Jobs created per second (backend and scaler), and the scaler's reaction time.

Everything runs against the API server double (tests/k8s_double) and an embedded
nats-server, in this process::

    python -m benchmarks.bench_k8s                  # human-readable figures
    python -m benchmarks.bench_k8s --json > k8s.json
    python -m benchmarks.bench_k8s --baseline k8s.json

Figures:

* ``launcher_*``: :meth:`JobLauncher.launch` (manifest + create + local cache, with the
  run's two watches receiving every change) one after the other, beside ``bare_create_*``:
  the official client creating the same manifests, the double's own cost in the same run;
* ``scaler_*``: one :meth:`ScalerService.scale_once` round creating ``n`` worker Jobs for a
  lag of ``n``;
* ``reaction_*``: from publishing a step on ``agentic.steps.<pool>`` to the worker Job
  existing, with the early wake-up (the default) and with the poll alone; the target is one
  polling interval plus under 100 ms, and the polling interval is printed beside it.

The Jobs' image is unpullable in the double, so their pods never start: only creation is
timed, not the workers.
"""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentic import names
from agentic.backends.kubernetes import JobLauncher
from agentic.backends.kubernetes.api import delete_job
from agentic.bus import EmbeddedNats, connect, provision, pull_steps
from agentic.contracts import AgentProvider, ScriptedScript, TaskConfig, WorkflowConfig
from agentic.k8s.jobs import step_job_manifest, worker_selector
from agentic.materialize import materialize, with_attempt
from agentic.settings import Settings
from agentic.store import open_store
from benchmarks.figures import parser, report, summary_ms
from services.scaler import ScalerService
from tests.k8s_double import KubeDouble

NS = "agentic"
UNPULLABLE = "registry.invalid/agentic-worker:bench"


def _settings(store_dir: Path, nats_url: str, **overrides: Any) -> Settings:
    return Settings(
        k8s_namespace=NS,
        k8s_image=UNPULLABLE,
        k8s_store_pvc="agentic-store",
        k8s_store_mount_path=str(store_dir),
        run_store_url=str(store_dir),
        nats_url=nats_url,
        **overrides,
    )


def _spec(store_url: str, settings: Settings) -> Any:
    agent = AgentProvider(
        id="bench", type="scripted", role="r", goal="g", backstory="b",
        script=ScriptedScript(replies=["ok"]),
    )  # fmt: skip
    task = TaskConfig(id="step", agent_provider_id="bench", description="d", expected_output="e")
    workflow = WorkflowConfig(
        name="bench", topic="t", agent_providers=[agent], tasks=[task], task_sequence=["step"]
    )
    [spec] = materialize(
        workflow, run_id="bench", inputs={}, store_url=store_url, settings=settings
    )
    return spec


def _rate(samples_s: list[float], prefix: str) -> dict[str, float]:
    figures = {f"{prefix}_{k}": v for k, v in summary_ms(samples_s).items()}
    figures[f"{prefix}_jobs_per_s"] = round(len(samples_s) / sum(samples_s), 1)
    return figures


def bench_launcher(double: KubeDouble, settings: Settings, n: int) -> dict[str, float]:
    """Time ``n`` launches (each a new attempt, so a new Job) and ``n`` bare creates."""
    from kubernetes import client

    api = double.api_client()
    store = open_store(settings.run_store_url)
    spec = _spec(store.url, settings)
    launcher = JobLauncher(store, settings, api)
    batch = client.BatchV1Api(api)
    url = store.spec_url(spec.run_id, spec.step_id)
    launched, bare = [], []
    try:
        launcher.launch(spec)  # starts the watches: setup, not timed
        for attempt in range(2, n + 2):
            one = with_attempt(spec, attempt)
            start = time.perf_counter()
            launcher.launch(one)
            launched.append(time.perf_counter() - start)
            # The same manifest through the bare client: the double's own cost of this Job.
            body = step_job_manifest(with_attempt(spec, n + attempt), settings, spec_url=url)
            start = time.perf_counter()
            batch.create_namespaced_job(NS, body, _preload_content=False)
            bare.append(time.perf_counter() - start)
    finally:
        launcher.close()
        api.close()
    return _rate(launched, "launcher") | _rate(bare, "bare_create")


class _ScalerThread:
    """A scaler on its own event loop in a background thread."""

    def __init__(self, service: ScalerService) -> None:
        self.service = service
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def serve() -> None:
            async with self.service:
                self._ready.set()
                await self.service.run()

        self.loop.run_until_complete(serve())

    def __enter__(self) -> _ScalerThread:
        self._thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.service.request_stop)
        self._thread.join(30)


async def _publish(settings: Settings, pool: str, count: int) -> None:
    nc = await connect(settings, name="agentic-bench")
    try:
        js = nc.jetstream()
        await provision(js, settings, pools=[pool])
        for _ in range(count):
            await js.publish(names.steps_subject(pool), b"{}")
    finally:
        await nc.close()


def bench_scaler_round(double: KubeDouble, settings: Settings, n: int) -> dict[str, float]:
    """One round that creates ``n`` worker Jobs for a lag of ``n``."""
    pool = "bench-round"
    settings = settings.model_copy(update={"scaler_max_jobs": n})
    asyncio.run(_publish(settings, pool, n))
    api = double.api_client()
    service = ScalerService(settings, pool=pool, api_client=api)

    async def round_trip() -> float:
        async with service:
            start = time.perf_counter()
            decision = await service.scale_once()
            elapsed = time.perf_counter() - start
        assert decision.create == n, decision
        return elapsed

    try:
        elapsed = asyncio.run(round_trip())
    finally:
        api.close()
    return {"scaler_round_ms": round(elapsed * 1000, 3), "scaler_jobs_per_s": round(n / elapsed, 1)}


def _wait(predicate: Callable[[], bool], timeout: float) -> float:
    """Spin (1 ms) until ``predicate``; returns the perf_counter when it turned true."""
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        if predicate():
            return time.perf_counter()
        time.sleep(0.001)
    raise TimeoutError("timed out waiting for the double")


def bench_reaction(
    double: KubeDouble, settings: Settings, n: int, *, wake: bool, pool: str
) -> list[float]:
    """Seconds from a published step to its worker Job, ``n`` times."""
    from kubernetes import client

    api = double.api_client()
    batch = client.BatchV1Api(api)
    service = ScalerService(settings, pool=pool, api_client=api, wake_on_publish=wake)
    selector = worker_selector(pool)

    def jobs() -> list[Any]:
        return double.store.items("jobs", NS, selector)[0]

    async def drain_one() -> None:
        nc = await connect(settings, name="agentic-bench")
        try:
            sub = await pull_steps(nc.jetstream(), pool)
            for msg in await sub.fetch(1, timeout=5):
                await msg.ack()
        finally:
            await nc.close()

    asyncio.run(_publish(settings, pool, 0))  # the consumer exists before the scaler starts
    samples = []
    try:
        with _ScalerThread(service):
            for _ in range(n):
                # At a random point of the polling cycle, as steps arrive in real life.
                time.sleep(0.2 + random.uniform(0, settings.scaler_poll_interval_s))
                start = time.perf_counter()
                asyncio.run(_publish(settings, pool, 1))
                samples.append(
                    _wait(lambda: bool(jobs()), settings.scaler_poll_interval_s + 5) - start
                )
                asyncio.run(drain_one())  # lag back to 0 before the Job goes
                for job in jobs():
                    delete_job(batch, NS, job["metadata"]["name"])
                _wait(lambda: not jobs(), 10)
    finally:
        api.close()
    return samples


def measure(n: int, reaction_n: int, poll_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="agentic-bench-k8s-") as tmp:
        store_dir = Path(tmp) / "store"
        store_dir.mkdir()
        with (
            EmbeddedNats(store_dir=Path(tmp) / "js") as server,
            KubeDouble(
                pvc_dirs={"agentic-store": store_dir},
                unpullable_images=[UNPULLABLE],
                workdir=Path(tmp) / "double",
            ) as double,
        ):
            settings = _settings(store_dir, server.url, scaler_poll_interval_s=poll_s)
            figures: dict[str, Any] = {"n": n, "scaler_poll_interval_s": poll_s}
            figures |= bench_launcher(double, settings, n)
            figures |= bench_scaler_round(double, settings, n)
            woken = bench_reaction(double, settings, reaction_n, wake=True, pool="bench-wake")
            polled = bench_reaction(double, settings, reaction_n, wake=False, pool="bench-poll")
    for name, samples in (("reaction_wake", woken), ("reaction_poll", polled)):
        figures[f"{name}_p50_ms"] = round(statistics.median(samples) * 1000, 3)
        figures[f"{name}_max_ms"] = round(max(samples) * 1000, 3)
    figures["reaction_target_ms"] = round(poll_s * 1000 + 100, 3)
    return figures


def lines(f: dict[str, Any]) -> list[str]:
    poll_ms = f["scaler_poll_interval_s"] * 1000
    return [
        f"backend JobLauncher.launch: {f['launcher_jobs_per_s']} Jobs/s "
        f"(p50 {f['launcher_p50_ms']:.2f} ms per Job, n={f['n']})",
        f"  bare client create of the same manifests: {f['bare_create_jobs_per_s']} "
        f"Jobs/s (p50 {f['bare_create_p50_ms']:.2f} ms)",
        f"scaler round creating {f['n']} worker Jobs: {f['scaler_round_ms']:.1f} ms "
        f"({f['scaler_jobs_per_s']} Jobs/s)",
        f"scaler reaction, publish -> worker Job (polling interval {poll_ms:.0f} ms, "
        f"target <= {f['reaction_target_ms']:.0f} ms):",
        f"  with the wake-up on agentic.steps.<pool>: p50 {f['reaction_wake_p50_ms']:.1f} ms, "
        f"max {f['reaction_wake_max_ms']:.1f} ms",
        f"  poll only: p50 {f['reaction_poll_p50_ms']:.1f} ms, "
        f"max {f['reaction_poll_max_ms']:.1f} ms",
    ]


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.split("\n", 1)[0])
    p.add_argument("--reaction-n", type=int, default=10, help="reaction samples per mode")
    p.add_argument("--poll", type=float, default=1.0, help="scaler polling interval (s)")
    args = p.parse_args(argv)
    quiet = logging.getLogger("services.scaler")  # no "ready"/"stopped" lines per sample
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        figures = measure(args.n or 100, args.reaction_n, args.poll)
    finally:
        quiet.setLevel(level)
    return report(figures, lines(figures), args)


if __name__ == "__main__":
    raise SystemExit(main())
