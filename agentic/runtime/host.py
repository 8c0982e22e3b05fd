"""What a worker's step processes run, forked from the warm runtime (:mod:`.warm`).

Two shapes, one protocol (``multiprocessing`` connection, whole messages; the process
sends ``READY`` first):

* :func:`step_loop`, *process isolation*: one step at a time. For each StepSpec (JSON) it
  receives, it sends back the StepResult (JSON). Stopping a step means killing the
  process.
* :func:`thread_host`, *thread isolation*: up to ``threads`` steps at once, each in a
  thread. A message is an 8-byte tag and a StepSpec; the answer is the same tag and the
  StepResult, in the order steps finish. A thread cannot be killed: its caller forgets a
  step it stops, and kills the whole host once no other step runs in it.

A StepSpec on the pipe may come after ``T`` and the 55 characters of a W3C
``traceparent``: the context of the worker's handling of the step message, which the
step's span continues (:func:`request`; docs/observability.md, "Traces").

A failure around the step (opening the store) is a failed, retryable result, never a
crash of the process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

from agentic import tracing
from agentic.contracts import StepError, StepResult, StepSpec, decode, encode
from agentic.runtime.warm import become_step_process, leave_step_process

if TYPE_CHECKING:
    from agentic.store import RunStore

READY = b"ready"
TAG_BYTES = 8
TRACE_MARK = b"T"
_TRACE_END = len(TRACE_MARK) + 55  # a version-00 traceparent is 55 characters

log = logging.getLogger(__name__)


def step_loop(conn: Connection, env: Mapping[str, str] | None = None) -> None:
    """Run steps one after another until the other end closes the connection."""
    become_step_process(env)
    stores = _Stores()
    conn.send_bytes(READY)
    try:
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                return  # the worker closed the pipe: nothing more to do
            result = run_one(*_read_request(data), stores)
            try:
                conn.send_bytes(encode(result))
            except OSError:
                return
    finally:
        leave_step_process()


def thread_host(conn: Connection, threads: int, env: Mapping[str, str] | None = None) -> None:
    """Run up to ``threads`` steps at once until the other end closes the connection."""
    become_step_process(env)
    stores = _Stores()
    sending = threading.Lock()

    def run(tag: bytes, spec: StepSpec, parent: tracing.TraceParent | None) -> None:
        answer = tag + encode(run_one(spec, parent, stores))
        try:
            with sending:
                conn.send_bytes(answer)
        except OSError:
            pass  # the worker is gone or has closed the pipe

    conn.send_bytes(READY)
    try:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="agentic-step") as pool:
            while True:
                try:
                    data = conn.recv_bytes()
                except (EOFError, OSError):
                    return
                pool.submit(run, data[:TAG_BYTES], *_read_request(data[TAG_BYTES:]))
    finally:
        leave_step_process()


def request(spec: StepSpec) -> bytes:
    """What a worker sends its step process for one attempt: the spec, after the caller's
    trace context when it has one."""
    body = encode(spec)
    parent = tracing.current()
    return TRACE_MARK + str(parent).encode() + body if parent is not None else body


def _read_request(data: bytes) -> tuple[StepSpec, tracing.TraceParent | None]:
    parent = None
    if data[: len(TRACE_MARK)] == TRACE_MARK:
        parent = tracing.TraceParent.parse(data[len(TRACE_MARK) : _TRACE_END].decode("latin-1"))
        data = data[_TRACE_END:]
    return decode(StepSpec, data), parent


def run_one(spec: StepSpec, parent: tracing.TraceParent | None, stores: _Stores) -> StepResult:
    """Run one attempt (its span a child of ``parent``); a failure around the step (the
    store) is a failed result too."""
    from agentic.runtime import execute_step

    try:
        with tracing.carried(parent):
            return execute_step(spec, store=stores.get(spec.store_url))
    except Exception as exc:  # execute_step reports step failures; this is the rest
        log.exception("step %s/%s could not run", spec.run_id, spec.step_id)
        return StepResult(
            run_id=spec.run_id,
            step_id=spec.step_id,
            attempt=spec.attempt,
            status="failed",
            error=StepError(type=type(exc).__name__, message=str(exc), retryable=True),
        )


class _Stores:
    """The run stores the steps of one process write to, opened once each."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, RunStore] = {}

    def get(self, url: str) -> RunStore:
        from agentic.store import open_store

        with self._lock:
            store = self._open.get(url)
            if store is None:
                store = self._open[url] = open_store(url)
            return store
