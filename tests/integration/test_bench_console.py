"""The console benchmark runs end to end at tiny sizes (`make bench` runs the real sizes):
it must keep working and produce its figures, never how fast."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_console

pytestmark = [pytest.mark.slow, pytest.mark.nats, pytest.mark.procs]


def test_the_console_benchmark_reports_the_runs_page_and_the_follow_cost_at_tiny_sizes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--runs", "30", "--steps", "3", "-n", "3", "--nats-runs", "1", "--followers", "2"]
    assert bench_console.main([*argv, "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)

    assert figures["runs"] == 30
    assert figures["runs_page_ms"] > 0 and figures["runs_page_filtered_ms"] > 0
    assert figures["runs_page_search_ms"] > 0 and figures["runs_page_first_ms"] > 0
    assert figures["follow_event_us"] > 0 and figures["follow_store_look_us"] > 0
    assert figures["transitions_n"] == 2 and "follow_added_p50_ms" in figures
    # 2 run pages, each sent at least the run's end: the followers really followed
    assert figures["follow_messages"] >= 2
