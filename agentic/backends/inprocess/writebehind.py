"""Store writes off the critical path: in order, on one background thread.

Every store write is fsync'd, and the ``inprocess`` backend writes a spec, an attempt, a
result and a ``run.json`` snapshot per task while CrewAI's kickoff waits for it.
:class:`WriteBehindStore` queues those writes to one thread, which performs them in
submission order while the crew goes on (fsync releases the GIL), and
:meth:`WriteBehindStore.close` waits for all of them before the run is returned. Reads and
artifact writes (whose result the caller needs) pass straight through.

``run.json`` snapshots are coalesced: only the newest one of a run matters, so a run's
``run.json`` is rewritten at most once per ``run_interval_s``. A snapshot that comes sooner
is held back and replaced by any newer one; the newest is written at most
``run_interval_s`` late (and at :meth:`~WriteBehindStore.close`), after every write
submitted before it, so ``run.json`` never lists a step ahead of its stored result. Steps
of real models take seconds and see every snapshot written at once; a crew of quick
scripted steps writes the first and the last instead of one per step.

The trade-off: if the process dies abruptly (SIGKILL, power loss), the writes of the last
few milliseconds (and the ``run.json`` snapshots of the last ``run_interval_s``) may be
lost, and the run is then re-run from its last recorded step. A failed write is raised by
:meth:`~WriteBehindStore.close`, and nothing submitted after it is written.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentic.contracts import RunRecord, StepResult, StepSpec

if TYPE_CHECKING:
    from agentic.store import RunStore

_STOP = object()

RUN_INTERVAL_S = 0.2
"""Least time between two writes of one run's ``run.json`` (see the module docstring)."""


class WriteBehindStore:
    """A :class:`~agentic.store.RunStore` whose document writes happen in the background.

    Use it as a context manager, or call :meth:`close`; nothing is lost before that.

    Args:
        store: The store written to.
        run_interval_s: Least time between two writes of one run's ``run.json``.
    """

    def __init__(self, store: RunStore, *, run_interval_s: float = RUN_INTERVAL_S) -> None:
        self.store = store
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._interval = run_interval_s
        # Writer thread only: the newest snapshot held back per run, and when each run's
        # run.json was last written.
        self._held: dict[str, RunRecord] = {}
        self._written_at: dict[str, float] = {}
        self._thread = threading.Thread(target=self._work, name="agentic-store-writes", daemon=True)
        self._thread.start()

    def __enter__(self) -> WriteBehindStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        # Reads, URLs and artifact writes: straight to the store.
        return getattr(self.store, name)

    def write_spec(self, spec: StepSpec) -> str:
        """Queue ``spec.json``; returns its URL at once."""
        self._submit(self.store.write_spec, spec)
        return str(self.store.spec_url(spec.run_id, spec.step_id))

    def write_attempt(self, result: StepResult) -> None:
        """Queue the attempt file."""
        self._submit(self.store.write_attempt, result)

    def commit_result(self, result: StepResult) -> tuple[StepResult, bool]:
        """Queue the commit; only valid for a run this process alone writes (``inprocess``)."""
        self._submit(self.store.commit_result, result)
        return result, True

    def commit_attempt(self, result: StepResult) -> tuple[StepResult, bool]:
        """Queue the attempt and its commit; valid as :meth:`commit_result` is."""
        self._submit(self.store.commit_attempt, result)
        return result, True

    def write_run(self, record: RunRecord) -> None:
        """Queue a ``run.json`` snapshot (coalesced: see the module docstring)."""
        self._submit(self._hold_run, record)

    def close(self) -> None:
        """Wait until every queued write is done; raise the first one that failed."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        if self._error is not None:
            raise self._error

    def _submit(self, write: Callable[..., Any], *args: Any) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put((write, args))

    # --- the writer thread ---------------------------------------------------------------

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._next_due())
            except queue.Empty:  # a held snapshot is due
                self._perform(self._write_held, False)
                continue
            if item is _STOP:
                self._perform(self._write_held, True)
                return
            write, args = item
            self._perform(write, *args)

    def _perform(self, write: Callable[..., Any], *args: Any) -> None:
        if self._error is not None:
            return  # keep order: nothing after a failed write is written
        try:
            write(*args)
        except BaseException as exc:  # handed to the run's thread by close()
            self._error = exc

    def _hold_run(self, record: RunRecord) -> None:
        self._held[record.run_id] = record  # replaces an older snapshot not yet written
        self._write_held(False)

    def _next_due(self) -> float | None:
        """Seconds until the first held snapshot is due; None (wait for work) when none is."""
        if not self._held or self._error is not None:
            return None
        due = min(self._written_at[run_id] + self._interval for run_id in self._held)
        return max(0.0, due - time.monotonic())

    def _write_held(self, everything: bool) -> None:
        """Write the held snapshots that are due (``everything``: all of them)."""
        for run_id, record in list(self._held.items()):
            last = self._written_at.get(run_id)
            if everything or last is None or time.monotonic() >= last + self._interval:
                del self._held[run_id]
                self.store.write_run(record)
                self._written_at[run_id] = time.monotonic()
