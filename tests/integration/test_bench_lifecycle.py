"""The history and long-run benchmarks run end to end at tiny sizes (`make bench` runs the
real sizes): they must keep working, and their figures must be produced, never how fast."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_history, bench_long_runs

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.procs]


def test_the_history_benchmark_reports_start_up_listing_and_restore_at_tiny_sizes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--small", "2", "--large", "6", "--open", "3", "--s3-large", "0", "--cli-n", "1"]
    assert bench_history.main([*argv, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)

    assert figures["startup_small_ms"] > 0 and figures["startup_large_ms"] > 0
    assert figures["startup_rss_small_mb"] > 0 and "startup_rss_delta_mb" in figures
    assert figures["list_small_ms"] > 0 and figures["runs_cli_large_ms"] > 0
    assert figures["restore_submit_answer_s"] > 0 and figures["restore_all_s"] >= 0
    assert "s3_list_ratio" not in figures


def test_the_long_runs_benchmark_reports_cpu_and_spec_bytes_per_step_at_tiny_sizes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert bench_long_runs.main(["--short", "2", "--long", "4", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)

    assert figures["long_steps"] == 4
    assert figures["short_coordinator_cpu_ms_per_step"] > 0
    assert figures["long_spec_bytes_per_step"] > 0 and figures["spec_bytes_per_step_ratio"] > 0
