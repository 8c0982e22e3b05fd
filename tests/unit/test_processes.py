"""Whether a recorded process still lives (agentic.processes), and abandoned runs."""

from __future__ import annotations

import os
import socket

from agentic import processes
from agentic.contracts import DriverInfo
from agentic.processes import is_gone, is_running_here, start_ticks, this_process
from agentic.recording.journal import abandoned
from tests.factories import one_step, scripted_agent

NO_SUCH_PID = 4_194_305  # above Linux's largest pid_max


def test_this_process_is_running_and_not_gone() -> None:
    host, pid, started = this_process()

    assert (host, pid) == (socket.gethostname(), os.getpid())
    assert started is not None and started == start_ticks(pid)
    assert is_running_here(host, pid, started) and not is_gone(host, pid, started)


def test_a_process_that_does_not_exist_or_started_at_another_time_is_gone() -> None:
    host, pid, started = this_process()
    assert started is not None

    assert is_gone(host, NO_SUCH_PID, None)
    assert is_gone(host, pid, started + 1)  # the pid was reused by another process
    assert not is_running_here(host, pid, started + 1)


def test_a_process_of_another_host_is_never_declared_gone() -> None:
    assert not is_gone("elsewhere.example", NO_SUCH_PID, 1)
    assert not is_running_here("elsewhere.example", os.getpid(), None)


def test_a_running_run_is_abandoned_only_when_its_driver_is_gone() -> None:
    from agentic.contracts import RunRecord, RunRequest

    wf = one_step(scripted_agent())
    host, pid, started = this_process()

    def run(status: str, driver: DriverInfo | None) -> RunRecord:
        return RunRecord(
            run_id="r-1",
            request=RunRequest(workflow=wf),
            workflow=wf,
            backend="subprocess",
            status=status,  # type: ignore[arg-type]
            driver=driver,
        )

    gone = DriverInfo(host=host, pid=NO_SUCH_PID, started=1)
    alive = DriverInfo(host=host, pid=pid, started=started)
    assert abandoned(run("running", gone))
    assert not abandoned(run("running", alive))
    assert not abandoned(run("succeeded", gone))  # finished: nothing to drive
    assert not abandoned(run("running", None))  # a coordinator drives it


def test_the_process_table_finds_this_process_under_its_parent() -> None:
    table = processes.parents()
    assert table[os.getpid()] == os.getppid()
    assert os.getpid() in processes.children_of(os.getppid(), table)
    assert os.getpid() in processes.descendants_of(os.getppid())
