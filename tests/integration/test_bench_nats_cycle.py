"""The baseline benchmark runs against a real server and leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from agentic import names
from benchmarks.bench_nats_cycle import BENCH_POOL, main, measure_fsync_write, nats_cycle

pytestmark = [pytest.mark.nats, pytest.mark.procs]


async def test_the_cycle_benchmark_reports_percentiles_and_removes_its_consumer(
    nats_url: str, js: JetStreamContext
) -> None:
    figures = await nats_cycle(nats_url, n=20)
    assert figures["nats_cycle_n"] == 20
    assert 0 < figures["nats_cycle_p50_ms"] <= figures["nats_cycle_p95_ms"]
    with pytest.raises(NotFoundError):
        await js.consumer_info(names.STEPS_STREAM, names.workers_consumer(BENCH_POOL))


def test_the_fsync_benchmark_cleans_up_its_files(tmp_path: Path) -> None:
    figures = measure_fsync_write(tmp_path, n=5)
    assert 0 < figures["fsync_write_p50_ms"] <= figures["fsync_write_p95_ms"]
    assert list(tmp_path.iterdir()) == []


def test_the_cli_prints_json_with_ratios_to_a_baseline(
    nats_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "base.json"
    baseline.write_text(json.dumps({"nats_cycle_p50_ms": 1000.0, "fsync_write_p50_ms": 1000.0}))
    argv = ["--url", nats_url, "-n", "10", "--dir", str(tmp_path), "--json"]
    assert main([*argv, "--baseline", str(baseline)]) == 0
    printed = json.loads(capsys.readouterr().out)
    ratios = printed["ratios_to_baseline"]
    assert set(ratios) == {"nats_cycle_p50_ms", "fsync_write_p50_ms"}
    assert ratios["nats_cycle_p50_ms"] == round(printed["nats_cycle_p50_ms"] / 1000.0, 3)
