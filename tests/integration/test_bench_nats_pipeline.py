"""The pipeline benchmark runs end to end at tiny sizes (the real sizes are `make bench`)."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench_nats_pipeline import LEGS, main

# The single-process baseline imports CrewAI, which warns about its own package layout.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.nats,
    pytest.mark.procs,
    pytest.mark.filterwarnings("ignore::ImportWarning"),
]


def test_the_pipeline_benchmark_reports_all_three_figures_at_tiny_sizes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--steps", "3", "--transition-runs", "1", "--runs", "2", "--footprint-runs", "3"]
    assert main([*argv, "--cycle-n", "20", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)

    assert figures["transition_n"] == 2  # 3 steps, 2 transitions
    assert 0 < figures["transition_p50_ms"] <= figures["transition_p95_ms"]
    assert all(f"transition_{leg}_p50_ms" in figures for leg in LEGS)
    assert 0 < figures["transition_unsecured_p50_ms"] <= figures["transition_unsecured_p95_ms"]
    cost = figures["transition_p50_ms"] - figures["transition_unsecured_p50_ms"]
    assert figures["transition_security_cost_p50_ms"] == pytest.approx(cost, abs=0.002)
    assert figures["transition_cluster_nodes"] == 3
    assert 0 < figures["transition_replicated_p50_ms"] <= figures["transition_replicated_p95_ms"]
    replication = figures["transition_replicated_p50_ms"] - figures["transition_p50_ms"]
    assert figures["transition_replication_cost_p50_ms"] == pytest.approx(replication, abs=0.002)
    assert figures["throughput_runs_lost"] == 0
    assert figures["throughput_results_committed"] == 2 * 5
    assert figures["throughput_steps_per_s"] > 0 and figures["single_process_steps_per_s"] > 0
    assert figures["coordinator_unfinished_runs"] == 3
    assert 0 < figures["coordinator_rss_mb"] < 1000
    assert figures["coordinator_imports_crewai"] is False
    assert figures["nats_cycle_p50_ms"] > 0
