"""Store writes queued behind the run: in order, all done by close(), failures not lost."""

from __future__ import annotations

import pytest

from agentic.backends.writebehind import WriteBehindStore
from agentic.contracts import RunRecord, RunRequest, StepResult, WorkflowConfig
from agentic.errors import StoreError
from agentic.store import open_store
from tests.unit.test_driver import PROVIDER, task


def record(status: str = "running") -> RunRecord:
    wf = WorkflowConfig(
        name="wf", agent_providers=[PROVIDER], tasks=[task("a")], task_sequence=["a"]
    )
    return RunRecord(
        run_id="r1", request=RunRequest(workflow=wf), workflow=wf, backend="t", status=status
    )  # type: ignore[arg-type]


def test_every_queued_write_is_in_the_store_once_closed_and_the_last_one_wins() -> None:
    store = open_store("memory://writebehind-order")
    with WriteBehindStore(store) as writes:
        for status in ("pending", "running", "succeeded"):
            writes.write_run(record(status))
        writes.write_attempt(StepResult(run_id="r1", step_id="a", attempt=1, status="succeeded"))
        writes.commit_result(StepResult(run_id="r1", step_id="a", attempt=1, status="succeeded"))
    assert store.read_run("r1").status == "succeeded"
    assert [r.attempt for r in store.read_attempts("r1", "a")] == [1]
    assert store.read_result("r1", "a") is not None


def test_reads_go_straight_to_the_store() -> None:
    store = open_store("memory://writebehind-reads")
    store.create_run(record())
    with WriteBehindStore(store) as writes:
        assert writes.url == store.url
        assert writes.read_run("r1").status == "running"


def test_a_failed_write_is_raised_by_close_and_nothing_after_it_is_written() -> None:
    class Failing:
        url = "memory:///failing"

        def __init__(self) -> None:
            self.written: list[str] = []

        def write_run(self, rec: RunRecord) -> None:
            if rec.status == "running":
                raise StoreError("disk full")
            self.written.append(rec.status)

    target = Failing()
    writes = WriteBehindStore(target)  # type: ignore[arg-type]
    for status in ("pending", "running", "succeeded"):
        writes.write_run(record(status))
    with pytest.raises(StoreError, match="disk full"):
        writes.close()
    assert target.written == ["pending"]
