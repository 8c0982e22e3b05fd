"""`agentic gc`: finished runs older than the cutoff go, with their knowledge-index entries
and their events in AGENTIC_EVENTS; nothing of an unfinished run ever goes; on a file store
and on S3; a NATS server that cannot be reached leaves the store part done and is reported."""

from __future__ import annotations

import asyncio
import importlib
import socket
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentic import names
from agentic.bus import connect, provision
from agentic.bus.timeline import RunTimeline
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
    monkeypatch.delenv("AGENTIC_NATS_URL", raising=False)
    settings = Settings(run_store_url=url)
    with open_index(settings, open_store(url)) as index:
        assert {m.run_id for m in index.search("wombats")} == {"old-ok", "recent"}

    dry = runner.invoke(app, ["gc", "--older-than", "30d", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would remove 2 runs; kept 1 newer and 2 unfinished" in dry.output
    assert len(kept(url)) == 5

    only_failed = runner.invoke(app, ["gc", "--older-than", "30d", "--status", "failed"])
    assert only_failed.exit_code == 0 and "removed old-failed" in only_failed.output
    assert kept(url) == ["old-ok", "old-pending", "old-running", "recent"]

    done = runner.invoke(app, ["gc", "--older-than", "30d"])
    assert done.exit_code == 0, done.output
    assert "streams: not touched (no AGENTIC_NATS_URL: store only)" in done.output
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


def nats_run(url: str, run_id: str, finished: datetime) -> None:
    """A run of the nats backend that succeeded at ``finished``."""
    open_store(url).create_run(
        RunRecord(
            run_id=run_id,
            status="succeeded",
            request=RunRequest(workflow_ref="wf"),
            workflow=workflow(task("a")),
            backend="nats",
            created_at=finished - timedelta(minutes=5),
            updated_at=finished,
            finished_at=finished,
        )
    )


async def publish_runs(nats_url: str, run_ids: list[str]) -> None:
    """Each run's events as the coordinator publishes them (planned, step_ready, succeeded)."""
    settings = Settings(nats_url=nats_url)
    nc = await connect(settings, name="gc-test-publisher")
    try:
        js = nc.jetstream()
        await provision(js, settings)
        timeline = RunTimeline(js, publisher="coordinator", max_bytes=settings.max_message_bytes)
        for run_id in run_ids:
            await timeline.publish(run_id, "planned")
            await timeline.publish(run_id, "step_ready", step_id="a", attempt=1)
            await timeline.publish(run_id, "succeeded", data={"output": "done"})
    finally:
        await nc.close()


async def event_counts(nats_url: str, run_ids: list[str]) -> dict[str, int]:
    """How many events of each run AGENTIC_EVENTS holds."""
    nc = await connect(Settings(nats_url=nats_url), name="gc-test-reader")
    try:
        js = nc.jetstream()
        counts = {}
        for run_id in run_ids:
            info = await js.stream_info(names.EVENTS_STREAM, names.run_timeline_filter(run_id))
            counts[run_id] = sum((info.state.subjects or {}).values())
        return counts
    finally:
        await nc.close()


@pytest.mark.nats
@pytest.mark.procs
def test_gc_purges_the_events_of_the_runs_it_removes_and_keeps_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nats_url: str
) -> None:
    url = str(tmp_path / "store")
    # The kept run's id extends the removed one's: agentic.events.nightly.> would match both.
    nats_run(url, "nightly", utcnow() - timedelta(days=40))
    nats_run(url, "nightly.2", utcnow() - timedelta(days=2))
    runs = ["nightly", "nightly.2"]
    asyncio.run(publish_runs(nats_url, runs))
    assert asyncio.run(event_counts(nats_url, runs)) == {"nightly": 3, "nightly.2": 3}
    monkeypatch.setenv("AGENTIC_RUN_STORE_URL", url)
    monkeypatch.setenv("AGENTIC_NATS_URL", nats_url)

    dry = runner.invoke(app, ["gc", "--older-than", "30d", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "streams: would purge the events of 1 nats run" in dry.output
    assert asyncio.run(event_counts(nats_url, runs)) == {"nightly": 3, "nightly.2": 3}

    done = runner.invoke(app, ["gc", "--older-than", "30d"])

    assert done.exit_code == 0, done.output
    assert "streams: purged the events of 1 nats run from AGENTIC_EVENTS" in done.output
    assert kept(url) == ["nightly.2"]
    assert asyncio.run(event_counts(nats_url, runs)) == {"nightly": 0, "nightly.2": 3}


def test_gc_without_a_reachable_nats_server_removes_from_the_store_and_names_the_runs_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(tmp_path / "store")
    nats_run(url, "weekly", utcnow() - timedelta(days=40))
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # One connection attempt instead of three, without the wait: the same refusal, sooner.
    connecting = importlib.import_module("agentic.bus.connect")
    monkeypatch.setattr(connecting, "INITIAL_CONNECT_ATTEMPTS", 1)
    monkeypatch.setattr(connecting, "RECONNECT_WAIT_S", 0.05)
    monkeypatch.setenv("AGENTIC_RUN_STORE_URL", url)
    monkeypatch.setenv("AGENTIC_NATS_URL", f"nats://127.0.0.1:{port}")

    done = runner.invoke(app, ["gc", "--older-than", "30d"])

    assert done.exit_code == 1, done.output
    assert "removed 1 run;" in done.output
    assert "cannot connect to NATS" in done.output
    assert "the events of 1 removed run stay in AGENTIC_EVENTS" in done.output
    assert done.output.rstrip().endswith("weekly")
    assert kept(url) == []


def test_gc_with_a_nats_setting_that_cannot_work_removes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(tmp_path / "store")
    nats_run(url, "weekly", utcnow() - timedelta(days=40))
    monkeypatch.setenv("AGENTIC_RUN_STORE_URL", url)
    monkeypatch.setenv("AGENTIC_NATS_URL", "nats://127.0.0.1:4222")
    monkeypatch.setenv("AGENTIC_NATS_NKEY_SEED_FILE", str(tmp_path / "missing.nk"))

    done = runner.invoke(app, ["gc", "--older-than", "30d"])

    assert done.exit_code == 2, done.output
    assert "AGENTIC_NATS_NKEY_SEED_FILE: no such file" in done.output
    assert kept(url) == ["weekly"]
