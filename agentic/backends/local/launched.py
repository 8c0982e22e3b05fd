"""A :class:`~agentic.backends.base.Backend` made of the local driver and a step launcher.

This is the hook of every backend that starts one process or Job per step: ``subprocess``
passes a factory of :class:`~agentic.backends.subprocess.SubprocessLauncher`, ``kubernetes``
one of its Job launcher (with a longer poll interval, since each check is an API call)::

    def create_backend(**options):
        return LauncherBackend("kubernetes", lambda store, settings: JobLauncher(...),
                               poll_interval_s=1.0)

Every launcher's ``close()`` is called once the run is over.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from agentic.backends.base import EventCallback, StepLauncher
from agentic.backends.local.driver import LocalDriver
from agentic.contracts import RunRecord, StepResult
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.store import RunStore

LauncherFactory = Callable[["RunStore", Settings], StepLauncher[Any]]
"""Builds the launcher of one run from its store and settings."""


class LauncherBackend:
    """Runs each run with a :class:`LocalDriver` around a fresh launcher.

    Args:
        name: The backend's registry name.
        launcher_factory: Builds the launcher of one run.
        max_parallel: Most steps running at once, from the settings; None for no limit.
        poll_interval_s: Longest wait between two checks of the running steps.
        on_cancelled: Called with a run that ended cancelled and its settings, to clean up
            what the run's steps left behind (the ``kubernetes`` backend deletes its Jobs).
    """

    def __init__(
        self,
        name: str,
        launcher_factory: LauncherFactory,
        *,
        max_parallel: Callable[[Settings], int | None] | None = None,
        poll_interval_s: float = 0.05,
        on_cancelled: Callable[[RunRecord, Settings], None] | None = None,
    ) -> None:
        self.name = name
        self._launcher_factory = launcher_factory
        self._max_parallel = max_parallel
        self._poll_interval_s = poll_interval_s
        self._on_cancelled = on_cancelled
        self._lock = threading.Lock()
        self._drivers: dict[str, LocalDriver] = {}

    def run(
        self,
        record: RunRecord,
        store: RunStore,
        settings: Settings,
        on_event: EventCallback,
        *,
        reused: Mapping[str, StepResult] | None = None,
    ) -> RunRecord:
        """Run ``record`` to its end (see :meth:`LocalDriver.run`)."""
        launcher = self._launcher_factory(store, settings)
        driver = LocalDriver(
            launcher,
            store,
            settings,
            on_event,
            max_parallel=self._max_parallel(settings) if self._max_parallel else None,
            poll_interval_s=self._poll_interval_s,
        )
        with self._lock:
            self._drivers[record.run_id] = driver
        try:
            final = driver.run(record, reused=reused)
        finally:
            with self._lock:
                self._drivers.pop(record.run_id, None)
            launcher.close()
        if final.status == "cancelled" and self._on_cancelled is not None:
            self._on_cancelled(final, settings)
        return final

    def cancel(self, run_id: str | None = None, reason: str = "cancelled by request") -> bool:
        """Cancel one run in progress (or every one when ``run_id`` is None); thread-safe.

        Returns:
            True if a run in progress was asked to stop.
        """
        with self._lock:
            drivers = [d for rid, d in self._drivers.items() if run_id in (None, rid)]
        for driver in drivers:
            driver.cancel(reason)
        return bool(drivers)
