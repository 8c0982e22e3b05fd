"""The Kubernetes benchmark runs end to end on tiny sizes and reports every figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.bench_k8s import main

pytestmark = [pytest.mark.k8s, pytest.mark.nats, pytest.mark.procs]


def test_the_k8s_benchmark_prints_rates_and_reaction_times_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "base.json"
    baseline.write_text(json.dumps({"launcher_p50_ms": 1000.0}))

    argv = ["-n", "3", "--reaction-n", "2", "--poll", "0.5", "--json", "--baseline", str(baseline)]
    assert main(argv) == 0

    figures = json.loads(capsys.readouterr().out)
    assert figures["n"] == 3 and figures["scaler_poll_interval_s"] == 0.5
    for key in ("launcher_jobs_per_s", "bare_create_jobs_per_s", "scaler_jobs_per_s"):
        assert figures[key] > 0
    # The wake-up beats the poll: a Job exists well before the next polling round.
    assert figures["reaction_wake_p50_ms"] < 500 <= figures["reaction_target_ms"]
    assert figures["compared_with_baseline_file"]["launcher_p50_ms"] > 0
