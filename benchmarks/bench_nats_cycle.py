"""Baselines on this machine: a bare JetStream work-queue cycle and an fsync'd small write.

The pipeline's own figures (step-to-step transition, throughput) only mean something next to
what the broker and the disk cost here, so every benchmark prints its figures beside these,
measured in the same run::

    python -m benchmarks.bench_nats_cycle                 # embedded nats-server
    python -m benchmarks.bench_nats_cycle --url nats://…  # an existing server
    python -m benchmarks.bench_nats_cycle --json > base.json
    python -m benchmarks.bench_nats_cycle --baseline base.json

The cycle is the real step path: publish to ``agentic.steps.<pool>`` on ``AGENTIC_STEPS``,
``fetch(1)`` from the durable ``workers-<pool>`` consumer, ``ack()``; a bench pool keeps it
apart from real work and its consumer is deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentic import names
from agentic.bus import EmbeddedNats, connect, provision, pull_steps
from agentic.settings import Settings

BENCH_POOL = "bench-cycle"
WARMUP = 20


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    """p50 and p95 of a list of milliseconds, rounded to microseconds."""
    cuts = statistics.quantiles(samples_ms, n=100, method="inclusive")
    return {"p50_ms": round(statistics.median(samples_ms), 3), "p95_ms": round(cuts[94], 3)}


async def nats_cycle(url: str, n: int = 500) -> dict[str, Any]:
    """Time ``n`` publish → fetch(1) → ack cycles against the server at ``url``.

    Returns:
        ``{"nats_cycle_p50_ms", "nats_cycle_p95_ms", "nats_cycle_n"}``.
    """
    settings = Settings(nats_url=url)
    nc = await connect(settings, name="agentic-bench-cycle")
    js = nc.jetstream()
    try:
        await provision(js, settings, pools=[BENCH_POOL])
        sub = await pull_steps(js, BENCH_POOL)
        subject = names.steps_subject(BENCH_POOL)
        payload = b"x" * 512  # about the size of a small StepSpec
        samples: list[float] = []
        for i in range(WARMUP + n):
            start = time.perf_counter()
            await js.publish(subject, payload)
            msg = (await sub.fetch(1, timeout=5))[0]
            await msg.ack()
            if i >= WARMUP:
                samples.append((time.perf_counter() - start) * 1000)
        await sub.unsubscribe()
        await js.delete_consumer(names.STEPS_STREAM, names.workers_consumer(BENCH_POOL))
    finally:
        await nc.close()
    figures = percentiles(samples)
    return {
        "nats_cycle_p50_ms": figures["p50_ms"],
        "nats_cycle_p95_ms": figures["p95_ms"],
        "nats_cycle_n": n,
    }


def measure_nats_cycle(url: str, n: int = 500) -> dict[str, Any]:
    """Synchronous :func:`nats_cycle` (call ``nats_cycle`` from inside an event loop)."""
    return asyncio.run(nats_cycle(url, n))


def measure_fsync_write(directory: str | Path = ".", n: int = 200) -> dict[str, Any]:
    """Time ``n`` writes of a small JSON file, each flushed and fsync'd, in ``directory``.

    Returns:
        ``{"fsync_write_p50_ms", "fsync_write_p95_ms", "fsync_write_n"}``.
    """
    body = json.dumps({"status": "succeeded", "output": "x" * 300}).encode()
    samples: list[float] = []
    with tempfile.TemporaryDirectory(prefix="agentic-bench-", dir=directory) as tmp:
        for i in range(n):
            path = Path(tmp) / f"{i}.json"
            start = time.perf_counter()
            with open(path, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            samples.append((time.perf_counter() - start) * 1000)
    figures = percentiles(samples)
    return {
        "fsync_write_p50_ms": figures["p50_ms"],
        "fsync_write_p95_ms": figures["p95_ms"],
        "fsync_write_n": n,
    }


def baselines(url: str | None = None, *, n: int = 500, directory: str | Path = ".") -> dict:
    """Both baselines; without ``url`` an embedded server (store in ``directory``) is used."""
    if url is not None:
        return measure_nats_cycle(url, n) | measure_fsync_write(directory)
    with (
        tempfile.TemporaryDirectory(prefix="agentic-bench-js-", dir=directory) as store,
        EmbeddedNats(store_dir=store) as server,
    ):
        cycle = measure_nats_cycle(server.url, n)
    return cycle | measure_fsync_write(directory)


def report_lines(figures: Mapping[str, Any]) -> list[str]:
    """Human-readable lines for the baseline figures present in ``figures``."""
    lines = []
    if "nats_cycle_p50_ms" in figures:
        lines.append(
            f"bare JetStream publish → fetch(1) → ack: p50 {figures['nats_cycle_p50_ms']:.3f} ms, "
            f"p95 {figures['nats_cycle_p95_ms']:.3f} ms (n={figures['nats_cycle_n']})"
        )
    if "fsync_write_p50_ms" in figures:
        lines.append(
            f"fsync'd small-file write: p50 {figures['fsync_write_p50_ms']:.3f} ms, "
            f"p95 {figures['fsync_write_p95_ms']:.3f} ms (n={figures['fsync_write_n']})"
        )
    return lines


def ratios(now: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict[str, float]:
    """``now / baseline`` for every millisecond figure present in both."""
    out = {}
    for key, value in now.items():
        before = baseline.get(key)
        if key.endswith("_ms") and isinstance(before, int | float) and before > 0:
            out[key] = round(value / before, 3)
    return out


def compare_lines(now: Mapping[str, Any], baseline: Mapping[str, Any]) -> list[str]:
    """``key: now X ms, baseline Y ms, ratio R`` for every millisecond figure in both."""
    return [
        f"{key}: now {now[key]:.3f} ms, baseline {baseline[key]:.3f} ms, ratio {ratio:.2f}"
        for key, ratio in ratios(now, baseline).items()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", help="an existing NATS server (default: start an embedded one)")
    parser.add_argument("-n", type=int, default=500, help="cycles to time (default 500)")
    parser.add_argument("--dir", default=".", help="directory for the fsync'd writes and store")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--baseline", type=Path, help="a previous --json output to compare")
    args = parser.parse_args(argv)

    figures = baselines(args.url, n=args.n, directory=args.dir)
    previous = json.loads(args.baseline.read_text()) if args.baseline else None
    if args.json:
        out = dict(figures)
        if previous is not None:
            out["ratios_to_baseline"] = ratios(figures, previous)
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    print("\n".join(report_lines(figures)))
    if previous is not None:
        print("\n".join(compare_lines(figures, previous)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
