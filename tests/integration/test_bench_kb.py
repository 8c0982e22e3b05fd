"""The knowledge base benchmark runs end to end at tiny sizes (the real sizes: `make bench`)."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench_kb import main

pytestmark = [pytest.mark.filterwarnings("ignore::ImportWarning")]


def test_the_knowledge_benchmark_reports_indexing_query_and_planning_figures(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--runs", "6", "--steps", "3", "-n", "1", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)

    assert figures["step_outputs"] == 18
    assert figures["index_s"] > 0 and figures["index_bare_fts5_s"] > 0
    assert figures["query_kb_p50_ms"] > 0 and figures["query_bare_fts5_p50_ms"] > 0
    assert figures["planning_with_kb_p50_ms"] > 0 and figures["planning_without_kb_p50_ms"] > 0
