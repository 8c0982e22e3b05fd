"""The lifecycle every bus service shares (services.lifecycle), with no bus at all."""

from __future__ import annotations

import asyncio

import pytest

from agentic.settings import Settings
from services.lifecycle import BusService, StoppedWhileStarting, serve


class SlowStart(BusService):
    """A service whose start waits until told (as a worker waits for its step processes)."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__(Settings())
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = False
        self.closed = 0
        self.fail = fail

    async def _start(self) -> None:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.fail:
            raise RuntimeError("cannot start")

    async def _close(self) -> None:
        self.closed += 1

    async def run(self) -> int:
        return 7


async def test_a_stop_requested_during_the_start_cancels_it_and_releases_what_it_got() -> None:
    service = SlowStart()

    async def stop_once_started() -> None:
        await service.started.wait()
        service.request_stop()

    asyncio.get_running_loop().create_task(stop_once_started())
    with pytest.raises(StoppedWhileStarting):
        async with service:
            raise AssertionError("entered a service that was asked to stop")

    assert service.cancelled
    assert service.closed == 1


async def test_serve_returns_0_for_a_service_stopped_while_starting() -> None:
    service = SlowStart()
    service.request_stop()

    assert await serve(service) == 0
    assert service.closed == 0  # nothing was started, nothing to release


async def test_a_start_that_finishes_runs_the_service_and_a_failed_one_is_closed() -> None:
    ok, failing = SlowStart(), SlowStart(fail=True)
    ok.release.set()
    failing.release.set()

    assert await serve(ok) == 7
    with pytest.raises(RuntimeError, match="cannot start"):
        async with failing:
            pass
    assert ok.closed == 1 and failing.closed == 1 and not ok.cancelled
