"""Store writes off the critical path: in order, on one background thread.

Every store write is fsync'd (about a millisecond each here), and the ``inprocess`` backend
writes a spec, an attempt, a result and a ``run.json`` snapshot per task while CrewAI's
kickoff waits for it. :class:`WriteBehindStore` queues those writes to one thread, which
performs them in submission order while the crew goes on (fsync releases the GIL), and
:meth:`WriteBehindStore.close` waits for all of them before the run is returned. Reads and
artifact writes (whose result the caller needs) pass straight through.

The trade-off: if the process dies abruptly (SIGKILL, power loss), the writes of the last
few milliseconds may be lost, and the run is then re-run from its last recorded step. A
failed write is raised by :meth:`~WriteBehindStore.close`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentic.contracts import RunRecord, StepResult, StepSpec

if TYPE_CHECKING:
    from agentic.store import RunStore

_STOP = object()


class WriteBehindStore:
    """A :class:`~agentic.store.RunStore` whose document writes happen in the background.

    Use it as a context manager, or call :meth:`close`; nothing is lost before that.
    """

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._error: BaseException | None = None
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

    def write_run(self, record: RunRecord) -> None:
        """Queue ``run.json``."""
        self._submit(self.store.write_run, record)

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

    def _work(self) -> None:
        while (item := self._queue.get()) is not _STOP:
            if self._error is not None:
                continue  # keep order: nothing after a failed write is written
            write, args = item
            try:
                write(*args)
            except BaseException as exc:  # handed to the run's thread by close()
                self._error = exc
