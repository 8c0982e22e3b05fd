"""`agentic gc`: finished runs older than the cutoff go, with their knowledge-index entries;
nothing of an unfinished run ever goes; on a file store and on S3."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentic.cli import _register, app
from agentic.contracts import RunRecord, RunRequest, StepResult, utcnow
from agentic.knowledge import KnowledgeIndex, index_path, open_index
from agentic.lifecycle import collect
from agentic.settings import Settings
from agentic.store import open_store
from tests.unit.test_coordinator import task, workflow

_register()
runner = CliRunner()


def seed(url: str) -> dict[str, RunRecord]:
    """Four runs: old and recent finished ones, an old running one, an old pending one."""
    store = open_store(url)
    now = utcnow()
    wf = workflow(task("a"))
    runs = {
        "old-ok": ("succeeded", now - timedelta(days=40)),
        "old-failed": ("failed", now - timedelta(days=31)),
        "recent": ("succeeded", now - timedelta(days=2)),
        "old-running": ("running", None),
        "old-pending": ("pending", None),
    }
    made = {}
    for run_id, (status, finished) in runs.items():
        record = RunRecord(
            run_id=run_id,
            status=status,  # type: ignore[arg-type]
            request=RunRequest(workflow_ref="wf"),
            workflow=wf,
            backend="inprocess",
            output="an answer about wombats" if status == "succeeded" else None,
            created_at=now - timedelta(days=50),
            updated_at=now - timedelta(days=45),
            finished_at=finished,
        )
        store.create_run(record)
        store.commit_attempt(
            StepResult(run_id=run_id, step_id="a", attempt=1, status="succeeded", output="x")
        )
        made[run_id] = record
    return made


def kept(url: str) -> list[str]:
    return open_store(url).list_run_ids()


def test_gc_removes_exactly_the_finished_runs_older_than_the_cutoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(tmp_path / "store")
    seed(url)
    monkeypatch.setenv("AGENTIC_RUN_STORE_URL", url)
    settings = Settings(run_store_url=url)
    with open_index(settings, open_store(url)) as index:
        assert {m.run_id for m in index.search("wombats")} == {"old-ok", "recent"}

    dry = runner.invoke(app, ["gc", "--older-than", "30d", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would remove 2 run(s); kept 1 newer and 2 unfinished" in dry.output
    assert len(kept(url)) == 5

    only_failed = runner.invoke(app, ["gc", "--older-than", "30d", "--status", "failed"])
    assert only_failed.exit_code == 0 and "removed old-failed" in only_failed.output
    assert kept(url) == ["old-ok", "old-pending", "old-running", "recent"]

    done = runner.invoke(app, ["gc", "--older-than", "30d"])
    assert done.exit_code == 0, done.output
    assert kept(url) == ["old-pending", "old-running", "recent"]
    with KnowledgeIndex(index_path(settings, open_store(url))) as index:
        assert {m.run_id for m in index.search("wombats")} == {"recent"}
    assert open_store(url).read_result("old-running", "a") is not None


def test_gc_refuses_bad_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTIC_RUN_STORE_URL", str(tmp_path / "store"))
    assert runner.invoke(app, ["gc", "--older-than", "soon"]).exit_code == 2
    running = runner.invoke(app, ["gc", "--older-than", "1d", "--status", "running"])
    assert running.exit_code == 2 and "only finished runs" in running.output


@pytest.mark.procs
def test_gc_on_an_s3_store(s3_server) -> None:  # type: ignore[no-untyped-def]
    url = s3_server.unique_url()
    seed(url)

    done = collect(open_store(url), utcnow() - timedelta(days=30))

    assert sorted(r.run_id for r in done.removed) == ["old-failed", "old-ok"]
    assert kept(url) == ["old-pending", "old-running", "recent"]
