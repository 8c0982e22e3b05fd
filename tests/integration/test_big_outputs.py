"""Step outputs bigger than a bus message: they are store documents, not messages, so they
succeed; one too big for the store fails its run at once with a clear error (no retries,
no crash loop). The ``nats`` case is in test_nats_backend.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentic.cli.details import load_run
from agentic.contracts import ScriptedScript
from agentic.store import open_store
from tests.factories import one_step, scripted_agent
from tests.parity import run_workflow

pytestmark = [pytest.mark.procs, pytest.mark.filterwarnings("ignore::ImportWarning")]

LINE = "x" * 99  # with its newline, 100 bytes a line


def big(size: int):  # type: ignore[no-untyped-def]
    script = ScriptedScript(replies=[LINE], repeat=size // 100)
    return one_step(scripted_agent("big").model_copy(update={"script": script}))


@pytest.mark.parametrize("backend", ["inprocess", "subprocess"])
@pytest.mark.parametrize("size", [1_050_000, 10_000_000])
def test_an_output_bigger_than_a_message_succeeds(tmp_path: Path, backend: str, size: int) -> None:
    url = str(tmp_path / "store")
    run = run_workflow(backend, big(size), {}, url)

    assert run.record.status == "succeeded", run.record.error
    assert len(run.record.output or "") == size - 1
    result = open_store(url).read_result(run.record.run_id, "only")
    assert result is not None and len(result.output) == size - 1
    # run.json stays small: it keeps the start, and the CLI prints the whole from the result.
    stored = open_store(url).read_run(run.record.run_id)
    assert stored.output_bytes == size - 1 and len(stored.output or "") < 70_000
    assert load_run(open_store(url), run.record.run_id).output == result.output


@pytest.mark.parametrize("backend", ["inprocess", "subprocess"])
def test_an_output_too_big_for_the_store_fails_its_run_once_with_a_clear_error(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTIC_MAX_DOCUMENT_BYTES", str(1_048_576))
    url = str(tmp_path / "store")
    run = run_workflow(backend, big(1_050_000), {}, url)

    assert run.record.status == "failed"
    assert "failed after 1 attempt (error not retryable)" in (run.record.error or "")
    # The result's size depends on the host name and pid it records: about 1.06 MB.
    assert re.search(
        r"OutputTooLarge: the step's result is 1,06\d,\d{3} bytes \(1,049,999 characters of "
        r"output\), over the run store's limit of 1,048,576 bytes \(AGENTIC_MAX_DOCUMENT_BYTES\)",
        run.record.error or "",
    ), run.record.error
    (attempt,) = open_store(url).read_attempts(run.record.run_id, "only")
    assert attempt.status == "failed" and attempt.usage.completion_tokens > 0


def test_an_output_that_fits_its_result_but_not_run_json_is_cut_there_and_the_run_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # run.json holds the workflow twice (request and resolved) and the output: 2 x 300 KB of
    # task text + 600 KB of output is over the limit; the result (600 KB) and the spec are not.
    monkeypatch.setenv("AGENTIC_MAX_DOCUMENT_BYTES", str(1_048_576))
    url = str(tmp_path / "store")
    wf = big(600_000)
    wf = wf.model_copy(
        update={"tasks": [wf.tasks[0].model_copy(update={"description": "Say it. " * 37_500})]}
    )
    run = run_workflow("inprocess", wf, {}, url)

    assert run.record.status == "succeeded", run.record.error
    stored = open_store(url).read_run(run.record.run_id)
    assert stored.output_bytes == 599_999
    assert stored.output is not None and stored.output.startswith(LINE)
    assert 60_000 < len(stored.output) < 70_000
    assert f"agentic show {run.record.run_id} --output only" in stored.output
    result = open_store(url).read_result(run.record.run_id, "only")
    assert result is not None and len(result.output) == 599_999
