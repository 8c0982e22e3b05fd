"""Cancelling a run driven by a local process from anywhere: ``cancel.json`` in the store.

The ``nats`` backend's runs are cancelled by asking the coordinator over NATS. The other
backends' runs are driven by the process that started them (``agentic run``, ``agentic
replay``); ``agentic cancel`` reaches those through the store: it writes
``runs/<run_id>/cancel.json`` once (:meth:`~agentic.store.RunStore.request_cancel`), and the
driving process looks for it about every :data:`CANCEL_POLL_S` seconds:

* the step-per-process backends (``subprocess``, ``kubernetes``) check it in their driver
  loop and cancel as :meth:`~agentic.backends.local.driver.LocalDriver.cancel` does: running
  steps are terminated and the run ends ``cancelled``;
* ``inprocess`` checks it on a watcher thread, which interrupts the kickoff as Ctrl-C does
  (a ``SIGINT`` to the main thread; a run driven from another thread cannot be interrupted
  and is left to finish).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from agentic import names
from agentic.contracts import RunRecord, ended_record, utcnow
from agentic.errors import DecodeError, StoreError

if TYPE_CHECKING:
    from agentic.store import RunStore

log = logging.getLogger(__name__)

CANCEL_POLL_S = 1.0
# An interrupt of the main thread that has not surfaced after this long is sent again.
INTERRUPT_REPEAT_S = 0.5
INTERRUPT_REPEATS = 10
CANCELLED_BY_USER = "cancelled by the user (Ctrl-C)"
"""A run a caller interrupted (Ctrl-C) before its backend had it."""
CANCELLED_BY_INTERRUPT = "cancelled by Ctrl-C"
"""A run a backend stopped on Ctrl-C while it ran its steps."""
DEFAULT_REASON = "cancelled by request"


def cancel_scope(record: RunRecord) -> list[str]:
    """The runs whose cancel request cancels ``record``: itself, and for a round of an
    ``--iterative`` goal, the goal's run (so cancelling the goal stops the round)."""
    parent = record.labels.get(names.ITERATIVE_PARENT_LABEL)
    return [record.run_id] if not parent else [record.run_id, parent]


def cancel_document(reason: str) -> dict[str, Any]:
    """What ``cancel.json`` holds: the reason, when, and who asked."""
    return {
        "reason": reason,
        "requested_at": utcnow().isoformat(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }


class CancelRequests:
    """The cancel request of a run, read from the store at most every ``interval_s``.

    Args:
        store: The run store.
        run_ids: The run, and the runs whose cancel also cancels it (:func:`cancel_scope`).
        interval_s: Least time between two reads.
        clock: Monotonic seconds; tests may inject one.
    """

    def __init__(
        self,
        store: RunStore,
        run_ids: Sequence[str],
        *,
        interval_s: float = CANCEL_POLL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._run_ids = list(run_ids)
        self._interval_s, self._clock = interval_s, clock
        self._next = clock() + interval_s

    def due(self) -> str | None:
        """The request's reason if one is stored and a read was due; else None.

        A store that cannot be read is logged and read again at the next interval: a
        store outage must not stop the run.
        """
        now = self._clock()
        if now < self._next:
            return None
        self._next = now + self._interval_s
        for run_id in self._run_ids:
            try:
                request = self._store.cancel_request(run_id)
            except (StoreError, DecodeError) as exc:
                log.warning("run %s: cannot read its cancel request: %s", run_id, exc)
                continue
            if request is not None:
                return str(request.get("reason") or DEFAULT_REASON)
        return None


INTERRUPTED = threading.Event()
"""Set once a :class:`MainThreadInterrupter` interrupted the main thread: work it ran may go
on in a thread nobody can stop (a model call), which the process should not wait for when
it exits (``agentic.cli.main``)."""


@dataclass(frozen=True)
class Deadline:
    """An attempt the interrupter stops when its time is up (``timeout_s`` on ``inprocess``)."""

    step_id: str
    attempt: int
    at: float
    """``time.monotonic()`` when the attempt's time is up."""


class MainThreadInterrupter:
    """While entered, interrupts the main thread as Ctrl-C does when a cancel request is
    stored or when the armed :class:`Deadline` passes.

    It sends the main thread a ``SIGINT`` and, while entered, handles ``SIGINT`` itself: its
    own interrupt raises ``KeyboardInterrupt`` even in a process that inherited an ignored
    ``SIGINT`` (a background job), and any other ``SIGINT`` goes to the handler that was
    there before (Ctrl-C behaves as without it). The ``SIGINT`` is only sent while entered:
    leaving takes the lock the sender holds, so the interrupt surfaces inside the ``with``
    block at the latest while leaving it. Does nothing when entered from another thread
    (signal handlers belong to the main thread).

    An interrupt that does not surface within ``repeat_s`` is sent again (``repeats``
    times at most): CrewAI runs a model call on a thread of an event loop's executor, and
    the first ``KeyboardInterrupt`` only makes ``asyncio.run`` wait, while it shuts the
    loop down, for that call to return (600 s for a server that never answers). The next
    one ends that wait.

    A deadline's interrupt is not the end of the run: the caller catches it, reads
    :attr:`timed_out`, and calls :meth:`surfaced`, which stops the repeats; the watcher
    then goes on watching. :meth:`disarm` before the deadline passes means no interrupt,
    and an interrupt already on its way is swallowed (the attempt finished in time after
    all).

    Args:
        store: The run store.
        run_ids: The run and the runs whose cancel also cancels it (:func:`cancel_scope`).
        interval_s: How often the store is read.
        repeat_s: How long an interrupt may take to surface before it is sent again.
    """

    def __init__(
        self,
        store: RunStore,
        run_ids: Sequence[str],
        *,
        interval_s: float = CANCEL_POLL_S,
        repeat_s: float = INTERRUPT_REPEAT_S,
    ):
        self._requests = CancelRequests(store, run_ids, interval_s=interval_s)
        self._interval_s = interval_s
        self._repeat_s = repeat_s
        self._interrupted = threading.Event()
        self._wake = threading.Event()  # a Ctrl-C, a new deadline, or leaving
        # Reentrant: the SIGINT handler runs on the main thread, which may hold it.
        self._lock = threading.RLock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._previous: Any = None
        self._owed = 0  # interrupts sent whose SIGINT has not reached the handler yet
        self._wanted = False  # an interrupt of ours should still surface
        self._deadline: Deadline | None = None
        self.reason: str | None = None
        self.timed_out: Deadline | None = None
        """The deadline whose interrupt surfaced last (None: a cancel, or Ctrl-C)."""

    @property
    def active(self) -> bool:
        """Whether this interrupter can interrupt (entered from the main thread)."""
        return self._thread is not None

    def __enter__(self) -> MainThreadInterrupter:
        if threading.current_thread() is not threading.main_thread():
            return self
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        self._thread = threading.Thread(
            target=self._watch, name="agentic-cancel-watch", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            self._stopped.set()
            self._wake.set()
        if self._thread is None:
            return
        self._thread.join()
        if signal.getsignal(signal.SIGINT) == self._on_sigint:  # not replaced meanwhile
            signal.signal(signal.SIGINT, self._previous)

    def arm(self, step_id: str, attempt: int, timeout_s: float) -> None:
        """Interrupt the main thread ``timeout_s`` from now unless disarmed before."""
        with self._lock:
            self._deadline = Deadline(step_id, attempt, time.monotonic() + timeout_s)
            self._wake.set()

    def disarm(self) -> None:
        """No deadline any more; an interrupt it sent and that has not surfaced is dropped."""
        with self._lock:
            self._deadline = None
            if self.timed_out is not None and self._wanted:
                self._wanted = False

    def surfaced(self) -> None:
        """The caller caught the deadline's interrupt: send no more."""
        with self._lock:
            self._wanted = False

    def _on_sigint(self, signum: int, frame: Any) -> None:
        with self._lock:
            ours = self._owed > 0
            if ours:
                self._owed -= 1
                if not self._wanted:
                    return  # a repeat of an interrupt already caught, or a disarmed deadline
        if ours:
            INTERRUPTED.set()
            raise KeyboardInterrupt(self.reason)
        previous = self._previous
        if callable(previous) or previous == signal.SIG_DFL:
            INTERRUPTED.set()
            with self._lock:
                self.timed_out, self._wanted = None, True
            self._interrupted.set()  # the watcher makes sure it surfaces
            self._wake.set()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            raise KeyboardInterrupt
        # SIG_IGN (or unknown): ignored, as before

    def _watch(self) -> None:
        main = threading.main_thread().ident
        if main is None:
            return
        while not self._stopped.is_set():
            self._wake.wait(self._pause())
            self._wake.clear()
            if self._stopped.is_set():
                return
            if self._interrupted.is_set():
                self._repeat(main)  # Ctrl-C: the interrupt is on its way
                return
            if self._deadline_passed(main):
                self._repeat(main)
                continue
            reason = self._requests.due()
            if reason is None:
                continue
            with self._lock:
                if self._stopped.is_set():
                    return
                self.reason, self.timed_out = reason, None
                self._interrupt(main)
            self._repeat(main)
            return

    def _pause(self) -> float:
        with self._lock:
            if self._deadline is None:
                return self._interval_s
            return max(0.0, min(self._interval_s, self._deadline.at - time.monotonic()))

    def _deadline_passed(self, main: int) -> bool:
        with self._lock:
            deadline = self._deadline
            if deadline is None or time.monotonic() < deadline.at or self._stopped.is_set():
                return False
            self._deadline = None
            self.timed_out = deadline
            self.reason = f"step {deadline.step_id!r} timed out"
            self._interrupt(main)
            return True

    def _repeat(self, main: int) -> None:
        """Send the interrupt again until it surfaced (or the interrupter is left)."""
        for _ in range(INTERRUPT_REPEATS):
            if self._stopped.wait(self._repeat_s):
                return
            with self._lock:
                if self._stopped.is_set() or not self._wanted:
                    return
                log.info(
                    "the interrupt has not surfaced after %.1f s: sending it again", self._repeat_s
                )
                self._interrupt(main)

    def _interrupt(self, main: int) -> None:
        self._owed += 1
        self._wanted = True
        signal.pthread_kill(main, signal.SIGINT)


def mark_cancelled(store: RunStore, run_id: str, reason: str) -> RunRecord:
    """Record that ``run_id`` was cancelled, unless it already finished; return its record.

    Steps that were still running become ``cancelled`` and steps that never started
    ``skipped``, as the coordinator does on cancel.
    """
    record = store.read_run(run_id)
    if record.is_terminal:
        return record
    cancelled = ended_record(record, "cancelled", at=utcnow(), error=reason)
    store.write_run(cancelled)
    return cancelled
