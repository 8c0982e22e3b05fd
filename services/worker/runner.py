"""Where a worker slot runs its steps: a warm step process of its own, or a shared host.

Both are forked from the worker's warm runtime (:mod:`agentic.runtime.warm`): the fork
server imports CrewAI once, each step process costs a fork (milliseconds) and the pages it
writes. The worker process itself never imports CrewAI and survives any step.

* ``process`` isolation (:class:`StepRunner`, the default): one step process per slot, one
  step at a time. Stopping a step (cancel, timeout, shutdown) kills the process group
  (the step and whatever it started) and forks a fresh one. A step that crashes or
  leaks takes down its own process only. A process is replaced after
  ``step_process_max_steps`` steps or once its RSS passes ``step_process_max_rss_mb``.
* ``thread`` isolation (:class:`HostedRunner` over :class:`ThreadHosts`): the slots share
  one host process that runs each step in a thread, for I/O-bound pools (an LLM call
  waits, it does not compute): a step costs a thread and the objects it builds, about
  half a megabyte, instead of a process. A thread cannot be killed: a stopped step is
  forgotten at once (its slot reports it stopped and moves on) and its host is retired,
  taking no new step and killed as soon as none of its other steps is running. A step
  that crashes the process takes down the host's other steps too; they are redelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import threading
from collections.abc import Callable
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Protocol, TypeVar

from agentic.contracts import StepResult, StepSpec, decode
from agentic.errors import AgenticError
from agentic.processes import rss_bytes, signal_step
from agentic.runtime import host, warm
from agentic.settings import Settings

# The first step process waits for the fork server to import CrewAI: 2-3 s alone, more on
# a loaded machine. Every later one is a fork.
READY_TIMEOUT_S = 120.0
JOIN_TIMEOUT_S = 5.0
MB = 1024 * 1024

T = TypeVar("T")
log = logging.getLogger(__name__)


class StepProcessError(AgenticError):
    """The step process could not start, or died (or was stopped) before it answered."""

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Runner(Protocol):
    """What a slot needs from where its steps run."""

    @property
    def running(self) -> bool: ...

    @property
    def pid(self) -> int | None: ...

    def worn_out(self) -> bool: ...

    async def start(self) -> None: ...

    async def send(self, spec: StepSpec) -> None: ...

    async def receive(self) -> StepResult: ...

    def kill(self) -> None: ...

    async def restart(self) -> None: ...

    async def stop(self) -> None: ...


class Recycling:
    """When a step process (or a thread host) is replaced by a fresh one."""

    def __init__(self, max_steps: int, max_rss_mb: int) -> None:
        self.max_steps = max_steps
        self.max_rss_bytes = max_rss_mb * MB

    @classmethod
    def from_settings(cls, settings: Settings) -> Recycling:
        """``step_process_max_steps`` and ``step_process_max_rss_mb``."""
        return cls(settings.step_process_max_steps, settings.step_process_max_rss_mb)

    def due(self, pid: int | None, steps: int) -> str | None:
        """Why the process ``pid`` that ran ``steps`` steps should go (None: it stays)."""
        if steps >= self.max_steps:
            return f"it ran {steps} steps"
        rss = rss_bytes(pid) if pid is not None else None
        if rss is not None and rss > self.max_rss_bytes:
            return f"its RSS of {rss // MB} MB passed {self.max_rss_bytes // MB} MB"
        return None


class _Forked:
    """A process forked from the warm runtime and the worker's end of its pipe."""

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn

    @classmethod
    async def start(
        cls, target: Callable[..., None], *args: object, ready_timeout_s: float
    ) -> _Forked:
        parent, child = Pipe(duplex=True)
        process = warm.step_process(target, (child, *args))
        try:
            # Blocks until the fork server has imported the runtime: off the event loop.
            await _off_loop(process.start)
        except BaseException as exc:
            parent.close()
            if isinstance(exc, OSError | EOFError):
                raise StepProcessError(f"the warm runtime could not fork: {exc}") from exc
            raise
        finally:
            child.close()  # only the child holds its end: its death reads as EOF here
        forked = cls(process, parent)
        ready = await _off_loop(lambda: parent.poll(ready_timeout_s))
        try:
            hello = parent.recv_bytes() if ready else b""
        except (EOFError, OSError):
            hello = b""
        if hello != host.READY:
            forked.kill()
            code = await forked.reap()
            raise StepProcessError(
                f"the step process did not start (exit code {code}; see the worker's log)",
                exit_code=code,
            )
        return forked

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL the process group (the steps and whatever they started)."""
        pid = self.process.pid
        if pid is not None:
            signal_step(pid, signal.SIGKILL)

    async def reap(self) -> int | None:
        """Close the pipe and wait for the exit; the exit code."""
        self.conn.close()
        if self.process.pid is None:
            return None
        await _off_loop(lambda: self.process.join(JOIN_TIMEOUT_S))
        code = self.process.exitcode
        with contextlib.suppress(ValueError):
            self.process.close()
        return code


class StepRunner:
    """``process`` isolation: one warm step process for one slot."""

    def __init__(self, recycling: Recycling, *, ready_timeout_s: float = READY_TIMEOUT_S) -> None:
        self._recycling = recycling
        self._ready_timeout_s = ready_timeout_s
        self._forked: _Forked | None = None
        self._steps = 0

    @property
    def running(self) -> bool:
        """Whether the step process is alive."""
        return self._forked is not None and self._forked.process.is_alive()

    @property
    def pid(self) -> int | None:
        """The step process's pid (the ``step_pid`` of ``step_started`` events)."""
        return self._forked.pid if self._forked is not None else None

    def worn_out(self) -> bool:
        """Whether the process should be replaced before its next step."""
        reason = self._recycling.due(self.pid, self._steps)
        if reason is not None:
            log.info("replacing step process %s: %s", self.pid, reason)
        return reason is not None

    async def start(self) -> None:
        """Fork a step process and wait until it is ready.

        Raises:
            StepProcessError: it exited or did not get ready in time.
        """
        self._steps = 0
        self._forked = await _Forked.start(host.step_loop, ready_timeout_s=self._ready_timeout_s)

    async def send(self, spec: StepSpec) -> None:
        """Hand one attempt to the step process, which starts it at once.

        Raises:
            StepProcessError: the step process is not running or has died.
        """
        forked = self._forked
        if forked is None:
            raise StepProcessError("the step process is not running")
        self._steps += 1
        try:
            forked.conn.send_bytes(host.request(spec))  # with the trace context
        except OSError as exc:
            raise await self._died(exc) from exc

    async def receive(self) -> StepResult:
        """The result of the attempt handed over by :meth:`send`.

        Raises:
            StepProcessError: the step process died first (a crash, or :meth:`kill`).
        """
        forked = self._forked
        if forked is None:
            raise StepProcessError("the step process is not running")
        # Woken when the pipe turns readable (the answer, or EOF when the process dies).
        await _readable(forked.conn)
        try:
            data = forked.conn.recv_bytes()
        except (EOFError, OSError) as exc:
            raise await self._died(exc) from exc
        return decode(StepResult, data)

    async def _died(self, exc: BaseException) -> StepProcessError:
        code = await self._reap()
        return StepProcessError(f"the step process died (exit code {code})", exit_code=code)

    def kill(self) -> None:
        """SIGKILL the step process's group: the step and whatever it started."""
        if self._forked is not None:
            self._forked.kill()

    async def restart(self) -> None:
        """Replace the step process (after a crash, a kill, or when worn out)."""
        await self.stop()
        await self.start()

    async def stop(self) -> None:
        """Kill the step process and release its pipe."""
        self.kill()
        await self._reap()

    async def _reap(self) -> int | None:
        forked, self._forked = self._forked, None
        return await forked.reap() if forked is not None else None


class _Host:
    """One thread host: steps in flight by tag, answers read as they come."""

    def __init__(self, forked: _Forked, on_idle: Callable[[_Host], None]) -> None:
        self.forked = forked
        self.steps = 0
        self.retired = False
        self.ended = False
        self._on_idle = on_idle
        self._pending: dict[bytes, asyncio.Future[StepResult]] = {}
        self._tags = itertools.count(1)
        self._reader = asyncio.create_task(self._read())

    def submit(self, spec: StepSpec) -> tuple[bytes, asyncio.Future[StepResult]]:
        tag = next(self._tags).to_bytes(host.TAG_BYTES, "big")
        future: asyncio.Future[StepResult] = asyncio.get_running_loop().create_future()
        self._pending[tag] = future
        self.steps += 1
        try:
            self.forked.conn.send_bytes(tag + host.request(spec))
        except OSError as exc:
            del self._pending[tag]
            raise StepProcessError(f"the step host is gone: {exc}") from exc
        return tag, future

    def abandon(self, tag: bytes, reason: str) -> None:
        """Forget one step (its thread runs on until the host is killed); retire."""
        future = self._pending.pop(tag, None)
        if future is None or future.done():
            return  # it ended by itself an instant ago: nothing runs on
        future.set_exception(StepProcessError(f"the step was stopped ({reason})"))
        self.retire()

    def retire(self) -> None:
        """Take no new step; end once no step runs."""
        self.retired = True
        self._end_if_idle()

    def _end_if_idle(self) -> None:
        if self.retired and not self._pending:
            self.forked.kill()

    async def _read(self) -> None:
        conn = self.forked.conn
        try:
            while True:
                await _readable(conn)
                data = conn.recv_bytes()
                future = self._pending.pop(data[: host.TAG_BYTES], None)
                if future is not None and not future.done():
                    future.set_result(decode(StepResult, data[host.TAG_BYTES :]))
                self._end_if_idle()
        except (EOFError, OSError):
            pass
        code = await self.forked.reap()
        self.retired = self.ended = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(
                    StepProcessError(f"the step host died (exit code {code})", exit_code=code)
                )
        self._pending.clear()
        self._on_idle(self)

    async def close(self) -> None:
        self.forked.kill()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


class ThreadHosts:
    """The thread hosts of one worker: one takes new steps, retired ones drain."""

    def __init__(
        self, threads: int, recycling: Recycling, *, ready_timeout_s: float = READY_TIMEOUT_S
    ) -> None:
        self.threads = threads
        self._recycling = recycling
        self._ready_timeout_s = ready_timeout_s
        self._current: _Host | None = None
        self._draining: set[_Host] = set()
        self._lock = asyncio.Lock()

    async def host(self) -> _Host:
        """The host that takes the next step (a fresh one when the last is retired)."""
        async with self._lock:
            current = self._current
            if current is not None and not current.retired:
                reason = self._recycling.due(current.forked.pid, current.steps)
                if reason is not None:
                    log.info("retiring step host %s: %s", current.forked.pid, reason)
                    current.retire()
            if current is None or current.retired:
                if current is not None and not current.ended:
                    self._draining.add(current)
                forked = await _Forked.start(
                    host.thread_host, self.threads, ready_timeout_s=self._ready_timeout_s
                )
                current = self._current = _Host(forked, self._draining.discard)
            return current

    async def close(self) -> None:
        hosts = [*self._draining, *([self._current] if self._current else [])]
        self._current = None
        await asyncio.gather(*(h.close() for h in hosts), return_exceptions=True)


class HostedRunner:
    """``thread`` isolation: one slot's view of the worker's shared thread hosts."""

    def __init__(self, hosts: ThreadHosts) -> None:
        self._hosts = hosts
        self._host: _Host | None = None
        self._tag = b""
        self._future: asyncio.Future[StepResult] | None = None

    @property
    def running(self) -> bool:
        """Always: a host that died is replaced on the next step."""
        return True

    @property
    def pid(self) -> int | None:
        """The pid of the host running this slot's step."""
        return self._host.forked.pid if self._host is not None else None

    def worn_out(self) -> bool:
        """Never by itself: hosts are recycled by :class:`ThreadHosts`."""
        return False

    async def start(self) -> None:
        """Make sure a host is ready."""
        await self._hosts.host()

    async def send(self, spec: StepSpec) -> None:
        """Start one attempt in a thread of the current host."""
        self._host = await self._hosts.host()
        self._tag, self._future = self._host.submit(spec)

    async def receive(self) -> StepResult:
        """The result of the attempt handed over by :meth:`send`.

        Raises:
            StepProcessError: the host died, or :meth:`kill` stopped the step.
        """
        if self._future is None:
            raise StepProcessError("no step was started")
        try:
            return await self._future
        finally:
            self._future = None

    def kill(self) -> None:
        """Stop waiting for the step; its host is retired (a thread cannot be killed)."""
        if self._host is not None and self._future is not None:
            self._host.abandon(self._tag, "killed")

    async def restart(self) -> None:
        """Nothing to restart: the next step goes to a live host."""

    async def stop(self) -> None:
        """Stop waiting for the current step, if any."""
        self.kill()


async def _off_loop(fn: Callable[[], T]) -> T:
    """``fn()`` in a daemon thread: a blocked fork request never holds up the exit."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        result: T | None = None
        error: BaseException | None = None
        try:
            result = fn()
        except BaseException as exc:  # handed to the awaiting coroutine
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="agentic-fork", daemon=True).start()
    return await future


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
