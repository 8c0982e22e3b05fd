"""What the long-running services share: signals, logging, patience with the bus and the store.

Every service is an async context manager with ``run()`` and ``request_stop()``
(:class:`Service`); :class:`BusService` is that lifecycle written once, and :func:`serve`
runs a service until it returns or SIGTERM/SIGINT asks it to drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from agentic import logs
from agentic.errors import BusError, StoreError

if TYPE_CHECKING:
    from agentic.logs import LogFormat
    from agentic.settings import Settings
    from agentic.store import RunStore

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_RETRY_DELAY_S = 0.2
MAX_RETRY_DELAY_S = 2.0


class Service(Protocol):
    """A long-running service: ``async with service: await service.run()``."""

    async def __aenter__(self) -> Self: ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def run(self) -> int: ...
    def request_stop(self) -> None: ...


class StoppedWhileStarting(Exception):
    """A service was asked to stop before it was ready; it released what it had."""


class BusService:
    """The lifecycle of a service on the bus: ``async with`` starts it, and a start that
    fails half-way releases what it got; ``request_stop`` sets :attr:`_stopping`, which
    ``run`` watches.

    Subclasses write :meth:`_start` (connect to NATS as :attr:`_nc`, provision, subscribe)
    and, when they hold more than the connection, :meth:`_close`, which must cope with any
    point :meth:`_start` reached.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stopping = asyncio.Event()
        self._nc: Any = None

    async def __aenter__(self) -> Self:
        """Start; a stop requested meanwhile cancels the start at once.

        Raises:
            StoppedWhileStarting: :meth:`request_stop` came first (what the start got is
                released: a worker's step processes, still importing CrewAI, are killed).
        """
        if self._stopping.is_set():
            raise StoppedWhileStarting
        starting = asyncio.ensure_future(self._start())
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({starting, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                raise StoppedWhileStarting
            starting.result()
        except BaseException:
            if not starting.done():
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
            await self._close()
            raise
        finally:
            stop.cancel()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._close()

    def request_stop(self) -> None:
        """Ask :meth:`run` to finish what it holds and return (SIGTERM does this)."""
        self._stopping.set()

    async def _start(self) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.close()


async def open_run_store(store: RunStore | None, settings: Settings) -> RunStore:
    """``store``, or the store of ``settings.run_store_url`` opened off the event loop."""
    if store is not None:
        return store
    from agentic.store import open_store

    return await asyncio.to_thread(open_store, settings.run_store_url)


async def serve(service: Service) -> int:
    """Run ``service`` until it returns; SIGTERM and SIGINT ask it to drain and stop.

    Returns:
        The exit code ``run()`` returned.
    """
    loop = asyncio.get_running_loop()
    # Before entering: a coordinator on standby waits inside __aenter__ and must stop on
    # SIGTERM like any other.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.request_stop)
    try:
        async with service:
            return await service.run()
    except StoppedWhileStarting:
        log.info("stopped while starting")
        return 0
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def configure_logging(level: str, fmt: LogFormat = "text") -> None:
    """Log ``fmt`` lines at ``level`` on stderr, each with the ids of its run and step and
    secrets masked: :func:`agentic.logs.configure`, replacing the CLI's handler."""
    logs.configure(level, fmt)


async def persist(
    what: str,
    operation: Callable[[], Awaitable[T]],
    *,
    stopping: asyncio.Event,
) -> T:
    """Run ``operation`` until it succeeds: the bus or the store may be down for a while.

    A NATS server restarting or an object store hiccup must not lose a transition: the
    operation is retried with a growing delay (up to 2 s) for as long as the service runs.
    A failure that cannot go away (``retryable`` false: a message or document over its size
    limit) is raised at once.

    Raises:
        BusError, StoreError: at once when not ``retryable``; else the last failure, once
            ``stopping`` is set.
    """
    delay = FIRST_RETRY_DELAY_S
    while True:
        try:
            return await operation()
        except (BusError, StoreError) as exc:
            if not exc.retryable or stopping.is_set():
                raise
            log.warning("%s failed, retrying in %.1f s: %s", what, delay, exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)
        delay = min(delay * 2, MAX_RETRY_DELAY_S)


LOCAL_PROTOCOLS = frozenset({"file", "local", "memory"})


def reads_inline(store: RunStore) -> bool:
    """Whether a small document of ``store`` is best read on the event loop itself.

    True for local files and memory: reading a few KB from the page cache takes tens of
    microseconds, less than the hop to a thread and back (and its GIL hand-offs). A remote
    store's round trip (S3: milliseconds) must stay off the loop, in a thread.
    """
    protocol = store.fs.protocol
    protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
    return any(p in LOCAL_PROTOCOLS for p in protocols)
