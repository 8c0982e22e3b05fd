"""The step process of a worker slot: runs steps one after another, sent over a pipe.

It imports CrewAI (through :mod:`agentic.runtime`) once, when it starts, so each step costs
the mini-crew and not the import. It leads its own session, so killing its process group
also kills the MCP stdio servers a step started, and it dies with its worker (Linux
``PR_SET_PDEATHSIG``): a worker killed with SIGKILL leaves no step running behind.

Protocol (``multiprocessing`` connection, whole messages): the child sends ``READY`` once;
then for each StepSpec (JSON bytes) it receives, it sends back the StepResult (JSON bytes).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from agentic import redact
from agentic.contracts import StepError, StepResult, StepSpec, decode, encode

if TYPE_CHECKING:
    from agentic.store import RunStore

READY = b"ready"
_PR_SET_PDEATHSIG = 1

log = logging.getLogger(__name__)


def child_main(conn: Connection) -> None:
    """Entry point of the step process (``multiprocessing`` spawn target)."""
    os.setsid()
    _die_with_parent()
    # CrewAI prints an LLM's errors itself: keys a gateway echoes must not reach the log.
    redact.protect_environment()
    redact.mask_standard_streams()
    # Ctrl-C in a terminal reaches the worker, which decides what happens to the step.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from agentic import runtime

    runtime.setup()
    from agentic.runtime import step  # noqa: F401  (pays for the CrewAI import now)

    conn.send_bytes(READY)
    stores: dict[str, RunStore] = {}
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the worker closed the pipe: nothing more to do
        result = run_one(decode(StepSpec, data), stores)
        try:
            conn.send_bytes(encode(result))
        except OSError:
            return


def run_one(spec: StepSpec, stores: dict[str, RunStore]) -> StepResult:
    """Run one attempt; a failure around the step (the store) is a failed result too."""
    from agentic.runtime import execute_step
    from agentic.store import open_store

    try:
        store = stores.get(spec.store_url)
        if store is None:
            store = stores[spec.store_url] = open_store(spec.store_url)
        return execute_step(spec, store=store)
    except Exception as exc:  # execute_step reports step failures; this is the rest
        log.exception("step %s/%s could not run", spec.run_id, spec.step_id)
        return StepResult(
            run_id=spec.run_id,
            step_id=spec.step_id,
            attempt=spec.attempt,
            status="failed",
            error=StepError(type=type(exc).__name__, message=str(exc), retryable=True),
        )


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the worker dies; elsewhere, do nothing."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the worker died before the request took effect
        os._exit(1)
