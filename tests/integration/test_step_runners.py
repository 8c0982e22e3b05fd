"""A worker's step runners, forked from the real warm runtime and running real CrewAI steps
with the scripted provider: stopping, crashing and recycling in each isolation mode."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from agentic.contracts import StepSpec
from agentic.runtime import warm
from services.worker.runner import (
    HostedRunner,
    Recycling,
    StepProcessError,
    StepRunner,
    ThreadHosts,
)
from tests.factories import DONE, scripted_agent_data, step_spec
from tests.integration.nats_stack import process_gone

pytestmark = pytest.mark.procs

STOP_WITHIN_S = 1.0
KEEP = Recycling(max_steps=1000, max_rss_mb=4096)


def spec(store: Path, step_id: str, **script: Any) -> StepSpec:
    provider = scripted_agent_data(f"p-{step_id}", [DONE], **script)
    return step_spec(agent_provider=provider, step_id=step_id, store_url=str(store))


async def wait_gone(pid: int, within_s: float) -> float:
    """Seconds until ``pid`` is gone; fails past ``within_s``."""
    started = time.monotonic()
    while not process_gone(pid):
        assert time.monotonic() - started < within_s, f"process {pid} still runs"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture(autouse=True)
def _warm_server_started() -> None:
    warm.start()  # from the test's thread, which outlives every step process here


async def test_process_isolation_kills_a_stopped_step_at_once_and_forks_a_fresh_process(
    tmp_path: Path,
) -> None:
    runner = StepRunner(KEEP)
    await runner.start()
    try:
        first = runner.pid
        assert first is not None
        await runner.send(spec(tmp_path, "hang", fail={"times": 1, "mode": "hang"}))
        receiving = asyncio.create_task(runner.receive())
        await asyncio.sleep(0.5)  # the step is in its model call
        asked = time.monotonic()
        runner.kill()
        with pytest.raises(StepProcessError):
            await receiving
        assert time.monotonic() - asked < STOP_WITHIN_S
        await wait_gone(first, STOP_WITHIN_S)
        assert not runner.running

        await runner.restart()
        await runner.send(spec(tmp_path, "after"))
        result = await runner.receive()
    finally:
        await runner.stop()
    assert result.status == "succeeded" and result.output == "after done for agents"
    assert runner.pid is None


async def test_process_isolation_survives_a_crashing_step_and_recycles_after_max_steps(
    tmp_path: Path,
) -> None:
    runner = StepRunner(Recycling(max_steps=2, max_rss_mb=4096))
    await runner.start()
    try:
        await runner.send(spec(tmp_path, "boom", fail={"times": 1, "mode": "crash"}))
        with pytest.raises(StepProcessError) as crashed:
            await runner.receive()
        assert crashed.value.exit_code == 3
        assert not runner.running

        await runner.restart()
        pids = []
        for n in range(3):
            if runner.worn_out():
                await runner.restart()
            pids.append(runner.pid)
            await runner.send(spec(tmp_path, f"s{n}"))
            assert (await runner.receive()).status == "succeeded"
    finally:
        await runner.stop()
    assert pids[0] == pids[1] != pids[2]  # two steps per process


async def test_process_isolation_replaces_a_process_past_its_rss_limit(tmp_path: Path) -> None:
    runner = StepRunner(Recycling(max_steps=1000, max_rss_mb=64))  # a step process is ~150 MB
    await runner.start()
    try:
        assert runner.worn_out()
    finally:
        await runner.stop()
    assert not StepRunner(KEEP).worn_out()


async def test_thread_isolation_runs_steps_side_by_side_in_one_host(tmp_path: Path) -> None:
    hosts = ThreadHosts(4, KEEP)
    runners = [HostedRunner(hosts) for _ in range(4)]
    try:
        await asyncio.gather(*(r.start() for r in runners))
        started = time.monotonic()
        for n, runner in enumerate(runners):
            await runner.send(spec(tmp_path, f"t{n}", delay_s=1.0))
        results = await asyncio.gather(*(r.receive() for r in runners))
        took = time.monotonic() - started
        pids = {r.pid for r in runners}
    finally:
        await hosts.close()
    assert [r.status for r in results] == ["succeeded"] * 4
    assert [r.step_id for r in results] == ["t0", "t1", "t2", "t3"]
    assert len(pids) == 1
    assert took < 3.5, f"{took:.1f}s: the four 1 s steps did not overlap"


async def test_thread_isolation_drops_a_stopped_step_at_once_and_ends_its_host_after_the_others(
    tmp_path: Path,
) -> None:
    hosts = ThreadHosts(4, KEEP)
    stopped, other, later = HostedRunner(hosts), HostedRunner(hosts), HostedRunner(hosts)
    try:
        await stopped.start()
        await stopped.send(spec(tmp_path, "hang", fail={"times": 1, "mode": "hang"}))
        await other.send(spec(tmp_path, "other", delay_s=1.5))
        host_pid = stopped.pid
        assert host_pid is not None and other.pid == host_pid
        receiving = asyncio.create_task(stopped.receive())
        await asyncio.sleep(0.3)

        asked = time.monotonic()
        stopped.kill()
        with pytest.raises(StepProcessError, match="stopped"):
            await receiving
        assert time.monotonic() - asked < STOP_WITHIN_S

        await later.send(spec(tmp_path, "later"))  # a retired host takes no new step
        assert later.pid != host_pid
        assert not process_gone(host_pid)  # the other step still runs in it
        assert (await other.receive()).status == "succeeded"
        await wait_gone(host_pid, 5.0)  # the hanging thread ends with its host
        assert (await later.receive()).status == "succeeded"
    finally:
        await hosts.close()


async def test_thread_isolation_a_crash_fails_the_hosts_steps_and_the_next_step_gets_a_new_host(
    tmp_path: Path,
) -> None:
    hosts = ThreadHosts(4, Recycling(max_steps=3, max_rss_mb=4096))
    crasher, neighbour, after = HostedRunner(hosts), HostedRunner(hosts), HostedRunner(hosts)
    try:
        await neighbour.send(spec(tmp_path, "neighbour", delay_s=5.0))
        await crasher.send(spec(tmp_path, "boom", fail={"times": 1, "mode": "crash"}))
        crashed_host = crasher.pid
        for runner in (crasher, neighbour):
            with pytest.raises(StepProcessError, match="step host died"):
                await runner.receive()

        pids = []
        for n in range(4):  # recycled after 3 steps
            await after.send(spec(tmp_path, f"s{n}"))
            pids.append(after.pid)
            assert (await after.receive()).status == "succeeded"
    finally:
        await hosts.close()
    assert crashed_host not in pids
    assert pids[0] == pids[1] == pids[2] != pids[3]
    assert all(process_gone(pid) for pid in {*pids, crashed_host} if pid is not None)
