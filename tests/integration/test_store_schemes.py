"""What only one kind of run store has to show: processes on files, isolation, other clients."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path

import fsspec
import pytest

from agentic import names
from agentic.contracts import encode
from agentic.errors import ConfigError, StoreError
from agentic.store import open_store
from tests.factories import run_record, step_result, step_spec
from tests.fixtures.s3 import S3Server

pytestmark = pytest.mark.procs


def test_commits_from_four_processes_on_a_local_store_commit_exactly_one(tmp_path: Path) -> None:
    url = str(tmp_path / "store")
    go = tmp_path / "go"
    child = f"""
import json, os, sys, time
from agentic.contracts import StepResult
from agentic.store import open_store
store = open_store({url!r})
i = int(sys.argv[1])
result = StepResult(run_id="run-1", step_id="s", attempt=i + 1, status="succeeded",
                    output=f"process {{i}}")
print("ready", flush=True)
while not os.path.exists({str(go)!r}):
    time.sleep(0.001)
committed, by_me = store.commit_result(result)
print(json.dumps({{"by_me": by_me, "output": committed.output}}), flush=True)
"""
    procs = [
        subprocess.Popen([sys.executable, "-c", child, str(i)], stdout=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        go.touch()
        reports = [json.loads(proc.communicate(timeout=60)[0]) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    committed = open_store(url).read_result("run-1", "s")
    assert committed is not None
    assert sum(r["by_me"] for r in reports) == 1
    assert {r["output"] for r in reports} == {committed.output}


def test_a_plain_path_opens_the_same_store_as_its_file_url(tmp_path: Path) -> None:
    open_store(str(tmp_path / "store")).create_run(run_record("run-1"))

    via_url = open_store((tmp_path / "store").as_uri())

    assert via_url.read_run("run-1") == run_record("run-1")
    assert (tmp_path / "store" / "runs" / "run-1" / "run.json").is_file()


def test_local_writes_leave_no_temporary_files_behind(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    store.create_run(run_record("run-1"))
    store.create_run(run_record("run-1"))
    store.write_run(run_record("run-1", status="running"))
    store.commit_result(step_result())
    store.commit_result(step_result(output="again"))

    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    day = store.read_run("run-1").created_at.astimezone(UTC)
    entry = f"index/runs/{day:%Y-%m-%d}/{day:%H%M%S%f}_run-1.json"
    assert files == [
        "index/open/run-1.json",  # still running
        entry,
        "index/version.json",  # the index of a store indexed from its first run on
        "runs/run-1/run.json",
        "runs/run-1/steps/research/result.json",
    ]


def test_a_local_commit_of_an_attempt_links_its_file_and_keeps_it_when_the_attempt_is_rewritten(
    tmp_path: Path,
) -> None:
    store = open_store(str(tmp_path))
    step = tmp_path / "runs" / "run-1" / "steps" / "research"
    store.commit_attempt(step_result(output="committed"))
    # One file written, two names: the commit did not write the same bytes again.
    assert (step / "result.json").samefile(step / "attempts" / "1.json")

    store.write_attempt(step_result(output="rewritten"))

    assert store.read_result("run-1", "research") == step_result(output="committed")
    assert store.read_attempts("run-1", "research") == [step_result(output="rewritten")]
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        "runs/run-1/steps/research/attempts/1.json",
        "runs/run-1/steps/research/result.json",
    ]


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_a_local_store_is_readable_by_its_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    top = tmp_path / "new"  # a folder above the root that the store creates too
    with umask(0):  # the most permissive: every mode bit is the store's own choice
        store = open_store(str(top / "store"))
        store.create_run(run_record("run-1"))
        store.request_cancel("run-1", {"reason": "test"})
        store.write_spec(step_spec(store_url=store.url))
        store.write_attempt(step_result(attempt=1, output="first"))
        store.commit_attempt(step_result(attempt=2))  # a hard link of the attempt's file
        store.commit_result(step_result(step_id="write"))
        store.write_artifact("run-1", "research", "out/report.md", b"# Otters\n")

    made = [top, *top.rglob("*")]
    run_dir = top / "store/runs/run-1"
    files = {p.relative_to(run_dir).as_posix() for p in made if p.is_relative_to(run_dir)}
    indexed = {p.relative_to(top / "store").parts[:2] for p in made if "index" in p.parts}
    assert indexed == {("index",), ("index", "open"), ("index", "runs"), ("index", "version.json")}
    files = {f for f in files if (run_dir / f).is_file()}
    assert files == {
        "run.json",
        "cancel.json",
        "steps/research/spec.json",
        "steps/research/attempts/1.json",
        "steps/research/attempts/2.json",
        "steps/research/result.json",
        "steps/write/result.json",
        "artifacts/research/out/report.md",
    }
    wrong = {
        p.relative_to(tmp_path).as_posix(): oct(mode(p))
        for p in made
        if mode(p) != (0o600 if p.is_file() else 0o700)
    }
    assert wrong == {}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_memory_stores_with_different_roots_do_not_see_each_others_runs() -> None:
    first = open_store(f"memory://iso-{uuid.uuid4().hex}")
    second = open_store(f"memory://iso-{uuid.uuid4().hex}")
    try:
        first.create_run(run_record("run-1"))

        assert second.list_runs() == []
        assert not second.run_exists("run-1")
    finally:
        first.fs.rm(first.root, recursive=True)


def test_an_s3_store_reads_what_another_client_wrote(s3_server: S3Server) -> None:
    url = s3_server.unique_url()
    writer = open_store(url, **s3_server.storage_options)
    # A second client, not fsspec's cached instance, as another process would have.
    reader = open_store(url, skip_instance_cache=True, **s3_server.storage_options)
    assert reader.list_runs() == []

    writer.create_run(run_record("run-1"))
    writer.commit_result(step_result())

    assert [r.run_id for r in reader.list_runs()] == ["run-1"]
    assert reader.list_step_ids("run-1") == ["research"]
    with fsspec.open(f"{url}/{names.run_json('run-1')}", "rb", **s3_server.storage_options) as f:
        assert f.read() == encode(run_record("run-1"))


def test_an_s3_store_in_a_missing_bucket_fails_with_a_store_error_naming_the_url(
    s3_server: S3Server,
) -> None:
    store = open_store("s3://no-such-bucket/x", **s3_server.storage_options)

    # The first write of a run in an empty store is to the runs index (agentic.store.index).
    with pytest.raises(StoreError, match=r"s3://no-such-bucket/x/index/version\.json"):
        store.create_run(run_record("run-1"))
    with pytest.raises(StoreError, match=r"s3://no-such-bucket/x/runs/run-1/run\.json"):
        store.write_run(run_record("run-1"))


def test_an_unsupported_url_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ftp://host/store"):
        open_store("ftp://host/store")
