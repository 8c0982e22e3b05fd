"""Store writes queued behind the run: in order, all done by close(), failures not lost."""

from __future__ import annotations

import time

import pytest

from agentic.backends.inprocess.writebehind import WriteBehindStore
from agentic.contracts import RunRecord, StepResult
from agentic.errors import StoreError
from agentic.store import open_store
from tests.factories import run_record, step_result


def test_every_queued_write_is_in_the_store_once_closed_and_the_last_one_wins() -> None:
    store = open_store("memory://writebehind-order")
    with WriteBehindStore(store) as writes:
        for status in ("pending", "running", "succeeded"):
            writes.write_run(run_record("r1", status=status))
        writes.write_attempt(StepResult(run_id="r1", step_id="a", attempt=1, status="succeeded"))
        writes.commit_result(StepResult(run_id="r1", step_id="a", attempt=1, status="succeeded"))
    assert store.read_run("r1").status == "succeeded"
    assert [r.attempt for r in store.read_attempts("r1", "a")] == [1]
    assert store.read_result("r1", "a") is not None


def test_reads_go_straight_to_the_store() -> None:
    store = open_store("memory://writebehind-reads")
    store.create_run(run_record("r1", status="running"))
    with WriteBehindStore(store) as writes:
        assert writes.url == store.url
        assert writes.read_run("r1").status == "running"


class Recording:
    """A store that logs its writes in order, and fails the attempt of ``fail_step``."""

    url = "memory:///recording"

    def __init__(self, fail_step: str | None = None) -> None:
        self.log: list[str] = []
        self.fail_step = fail_step

    def write_run(self, rec: RunRecord) -> None:
        self.log.append(f"run {rec.status}")

    def write_attempt(self, result: StepResult) -> None:
        if result.step_id == self.fail_step:
            raise StoreError("disk full")
        self.log.append(f"attempt {result.step_id}")


def test_a_failed_write_is_raised_by_close_and_nothing_after_it_is_written() -> None:
    target = Recording(fail_step="a")
    writes = WriteBehindStore(target)  # type: ignore[arg-type]
    writes.write_run(run_record("r1", status="pending"))
    writes.write_attempt(step_result("r1", "a"))
    writes.write_attempt(step_result("r1", "b"))
    writes.write_run(run_record("r1", status="succeeded"))
    with pytest.raises(StoreError, match="disk full"):
        writes.close()
    assert target.log == ["run pending"]


def test_snapshots_within_the_interval_are_coalesced_into_the_newest_after_earlier_writes() -> None:
    target = Recording()
    with WriteBehindStore(target, run_interval_s=60) as writes:  # type: ignore[arg-type]
        writes.write_run(run_record("r1", status="pending"))
        writes.write_attempt(step_result("r1", "a"))
        writes.write_run(run_record("r1", status="running"))
        writes.write_attempt(step_result("r1", "b"))
        writes.write_run(run_record("r1", status="succeeded"))
    assert target.log == ["run pending", "attempt a", "attempt b", "run succeeded"]


def test_a_held_snapshot_is_written_once_its_interval_has_passed_without_waiting_for_close() -> (
    None
):
    target = Recording()
    writes = WriteBehindStore(target, run_interval_s=0.2)  # type: ignore[arg-type]
    try:
        writes.write_run(run_record("r1", status="pending"))
        writes.write_run(run_record("r1", status="running"))
        deadline = time.monotonic() + 10
        while "run running" not in target.log and time.monotonic() < deadline:
            time.sleep(0.01)
        assert target.log == ["run pending", "run running"]
    finally:
        writes.close()
    assert target.log == ["run pending", "run running"]
