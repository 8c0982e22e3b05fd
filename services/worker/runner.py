"""A worker slot's step process: start it, hand it a step, kill it.

Each slot keeps one child process (:mod:`services.worker.child`) that has CrewAI loaded and
runs one step at a time. The worker process itself never imports CrewAI, survives any step
(a crash only takes the child down), and can always stop a step: it kills the child's
process group and starts a fresh child.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from multiprocessing import get_context
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from agentic.contracts import StepResult, StepSpec, decode, encode
from agentic.errors import AgenticError
from services.worker.child import READY, child_main

# Importing CrewAI takes 2-3 s alone; several children starting at once on a small machine
# take longer.
READY_TIMEOUT_S = 120.0
JOIN_TIMEOUT_S = 5.0


class StepProcessError(AgenticError):
    """The step process could not start, or died before it answered."""

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class StepRunner:
    """One child process running steps for one slot."""

    def __init__(self, *, ready_timeout_s: float = READY_TIMEOUT_S) -> None:
        self._ready_timeout_s = ready_timeout_s
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None

    @property
    def running(self) -> bool:
        """Whether the step process is alive."""
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        """The step process's pid (the ``step_pid`` of ``step_started`` events)."""
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start a child and wait until it has loaded the runtime.

        Raises:
            StepProcessError: it exited or did not get ready in time.
        """
        ctx = get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        process = ctx.Process(target=child_main, args=(child,), name="agentic-step")
        # Started from the event loop's thread: the child's "die with the parent" is tied
        # to the thread that started it.
        process.start()
        child.close()  # only the child holds its end: its death reads as EOF here
        self._process, self._conn = process, parent
        ready = await asyncio.to_thread(parent.poll, self._ready_timeout_s)
        try:
            hello = parent.recv_bytes() if ready else b""
        except (EOFError, OSError):
            hello = b""
        if hello != READY:
            self.kill()
            code = await self._reap()
            raise StepProcessError(
                f"the step process did not start (exit code {code}; see the worker's log)",
                exit_code=code,
            )

    async def run(self, spec: StepSpec) -> StepResult:
        """Run one attempt in the child and return its result (:meth:`send`, :meth:`receive`).

        Raises:
            StepProcessError: the child died first (a crash, or :meth:`kill`).
        """
        await self.send(spec)
        return await self.receive()

    async def send(self, spec: StepSpec) -> None:
        """Hand one attempt to the child, which starts it at once.

        Written from the event loop, not a thread: the child is idle and reading, so the
        pipe drains as fast as it fills, and the step starts a thread hop sooner.

        Raises:
            StepProcessError: the child is not running or has died.
        """
        conn = self._conn
        if conn is None:
            raise StepProcessError("the step process is not running")
        try:
            conn.send_bytes(encode(spec))
        except OSError as exc:
            raise await self._died(exc) from exc

    async def receive(self) -> StepResult:
        """The result of the attempt handed over by :meth:`send`.

        Raises:
            StepProcessError: the child died first (a crash, or :meth:`kill`).
        """
        conn = self._conn
        if conn is None:
            raise StepProcessError("the step process is not running")
        # Woken by the event loop when the pipe turns readable (the answer, or EOF when the
        # child dies): no thread hop. The child writes a whole answer at once, so reading
        # it does not wait on the child.
        await _readable(conn)
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError) as exc:
            raise await self._died(exc) from exc
        return decode(StepResult, data)

    async def _died(self, exc: BaseException) -> StepProcessError:
        code = await self._reap()
        return StepProcessError(f"the step process died (exit code {code})", exit_code=code)

    def kill(self) -> None:
        """SIGKILL the child's process group (the step and whatever it started), and the
        child itself: one still starting has not made its own group yet."""
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    async def restart(self) -> None:
        """Replace the child (after a crash or a kill)."""
        await self.stop()
        await self.start()

    async def stop(self) -> None:
        """Kill the child and release its pipe."""
        self.kill()
        await self._reap()

    async def _reap(self) -> int | None:
        process, conn = self._process, self._conn
        self._process, self._conn = None, None
        if conn is not None:
            conn.close()
        if process is None:
            return None
        await asyncio.to_thread(process.join, JOIN_TIMEOUT_S)
        code = process.exitcode
        with contextlib.suppress(ValueError):
            process.close()
        return code


async def _readable(conn: Connection) -> None:
    """Wait until ``conn`` has something to read (or its other end is closed)."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()
    fd = conn.fileno()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)
