"""The embedded stack: a nats-server, a coordinator and workers on this machine.

Composed here, in the CLI, because the core never imports ``services`` (DESIGN §8). Two
shapes:

* :func:`embedded_stack` serves one ``agentic run --backend nats`` when no
  ``AGENTIC_NATS_URL`` is set: nats-server as a child process (JetStream in a temporary
  directory, or ``AGENTIC_NATS_DATA_DIR``), and a coordinator and one worker as asyncio
  services on a background thread of the CLI process. One process is the cheaper shape
  here: the worker needs CrewAI, which the CLI process imports for the run anyway, while
  separate service processes would each pay Python's and CrewAI's start-up again. (The
  coordinator-never-imports-CrewAI rule is about the coordinator *service process*, which
  ``agentic up`` and ``agentic coordinator`` run on its own.)
* :class:`~agentic.cli.process_stack.ProcessStack` is ``agentic up``: nats-server, one
  ``agentic coordinator`` process and N ``agentic worker`` processes in the foreground.
"""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from agentic.errors import BusError, ConfigError
from agentic.settings import Settings

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

SERVICES_START_TIMEOUT_S = 60.0
SERVICES_STOP_GRACE_S = 30.0
# When `agentic run` ends, a step still running belongs to a run that was cancelled or
# given up on (a second Ctrl-C): it gets a few seconds, not a service's full drain.
EMBEDDED_WORKER_GRACE_S = 5.0
CHILD_STOP_GRACE_S = 20.0


def needs_embedded_stack(settings: Settings, backend: str | None) -> bool:
    """True when a run on ``backend`` must bring its own NATS stack (no ``AGENTIC_NATS_URL``)."""
    return (backend or settings.execution_backend) == "nats" and not settings.nats_url


@contextlib.contextmanager
def stack_for(
    settings: Settings, backend: str | None, *, detach: bool = False
) -> Iterator[Settings]:
    """The settings a run on ``backend`` uses, with an embedded stack around it if needed.

    Raises:
        ConfigError: ``detach`` without ``AGENTIC_NATS_URL`` (an embedded stack would stop
            with this process, and the run with it).
        BusError: the embedded stack did not start.
    """
    if not needs_embedded_stack(settings, backend):
        yield settings
        return
    if detach:
        raise ConfigError(
            "--detach needs a NATS stack that outlives this command: start `agentic up` "
            "and set AGENTIC_NATS_URL to the URL it prints"
        )
    with embedded_stack(settings) as local:
        yield local


@contextlib.contextmanager
def embedded_stack(settings: Settings) -> Iterator[Settings]:
    """Run nats-server, a coordinator and a worker for the duration of the block.

    Yields:
        ``settings`` with ``nats_url`` pointing at the embedded server.

    Raises:
        BusError: nats-server did not start.
    """
    from agentic.bus.embedded import EmbeddedNats
    from agentic.cli.local_auth import StackCredentials

    credentials = StackCredentials()
    try:
        with EmbeddedNats.from_settings(
            settings, terminate_with_parent=True, config_file=credentials.server_conf
        ) as server:
            # A run's own services serve no /metrics: they live as long as one `agentic run`,
            # and the coordinator and worker of one process could not share a port.
            local = settings.model_copy(update={"nats_url": server.url, "metrics_port": None})
            quiet_services(settings)
            coordinator = credentials.settings_for(local, "coordinator")
            with ServiceThread(coordinator, credentials.settings_for(local, "worker")):
                yield credentials.client_settings(local)
    finally:
        credentials.close()


class ServiceThread:
    """A :class:`CoordinatorService` and a :class:`WorkerService` on a background loop.

    Args:
        settings: The coordinator's settings (``nats_url`` set).
        worker_settings: The worker's (default: the coordinator's).
        concurrency: The worker's slots.
    """

    def __init__(
        self,
        settings: Settings,
        worker_settings: Settings | None = None,
        *,
        concurrency: int = 1,
    ) -> None:
        self._settings = settings
        self._worker_settings = worker_settings or settings
        self._concurrency = concurrency
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopping = False
        self._thread = threading.Thread(
            target=self._main, name="agentic-embedded-services", daemon=True
        )

    def __enter__(self) -> ServiceThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = SERVICES_START_TIMEOUT_S) -> None:
        """Start the services and return once they serve.

        Raises:
            BusError: they failed or did not start within ``timeout_s``.
        """
        self._thread.start()
        if not self._ready.wait(timeout_s):
            self.stop()
            raise BusError(f"the embedded coordinator and worker did not start in {timeout_s:g}s")
        if self._error is not None:
            raise BusError(f"the embedded services failed to start: {self._error}") from (
                self._error
            )

    def stop(self, grace_s: float = SERVICES_STOP_GRACE_S) -> None:
        """Drain the services (the worker finishes its step) and wait for the thread."""
        self._stopping = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                loop.call_soon_threadsafe(stop.set)
        if self._thread.is_alive():
            self._thread.join(grace_s)
        if self._thread.is_alive():
            log.warning("the embedded services did not stop within %gs", grace_s)

    def _main(self) -> None:
        from agentic.cli.relay import warm_runtime_relayed

        try:
            # Before the worker starts it: step processes must not print through the live
            # table. From this thread: the warm runtime lives as long as the services.
            warm_runtime_relayed()
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the starting thread, or logged
            self._error = exc
            if self._ready.is_set() and not self._stopping:  # a run is waiting on us
                log.error("the embedded services stopped: %s", exc)
                _thread.interrupt_main()
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        from services.coordinator import CoordinatorService
        from services.worker import WorkerService

        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with CoordinatorService(self._settings) as coordinator:
            coordinating = asyncio.create_task(coordinator.run())
            # Submits are answered from here on; the run's first step waits in the queue
            # while the worker starts its step process (CrewAI's import, seconds).
            self._ready.set()
            worker = WorkerService(
                self._worker_settings,
                concurrency=self._concurrency,
                grace_s=EMBEDDED_WORKER_GRACE_S,
            )
            async with worker:
                working = asyncio.create_task(worker.run())
                stopping = asyncio.create_task(self._stop.wait())
                done, _ = await asyncio.wait(
                    [coordinating, working, stopping], return_when=asyncio.FIRST_COMPLETED
                )
                if stopping not in done:
                    _service_ended(done)
                stopping.cancel()
                # Both at once: the run this stack served has ended (or was given up on),
                # so no step in progress needs the coordinator any more.
                worker.request_stop()
                coordinator.request_stop()
                await asyncio.gather(_finish(working), _finish(coordinating))


async def _finish(task: asyncio.Task[int], grace_s: float = SERVICES_STOP_GRACE_S) -> None:
    try:
        await asyncio.wait_for(task, grace_s)
    except TimeoutError:
        log.warning("an embedded service did not stop within %gs", grace_s)
    except Exception as exc:  # already reported by _service_ended, or raised while stopping
        log.debug("embedded service ended with %r", exc)


def _service_ended(done: set[asyncio.Task[Any]]) -> None:
    """A service stopped on its own while a run waits on it: tell the user, end the wait.

    Interrupting the main thread is what Ctrl-C does: the client asks the coordinator to
    cancel the run and gives up waiting, instead of waiting forever for a dead worker.
    """
    for task in done:
        error = None if task.cancelled() else task.exception()
        log.error("an embedded service stopped unexpectedly: %r", error)
    _thread.interrupt_main()


def quiet_services(settings: Settings) -> None:
    """Keep the embedded services' warnings about their own plumbing (a fetch cut short
    while the embedded server stops, a reconnect) out of ``agentic run``'s output.

    An operator of ``agentic coordinator`` wants to see them; between the progress lines
    of a run they are noise. Errors still show, and a lower ``AGENTIC_LOG_LEVEL`` shows
    everything (start and stop notices are at INFO).
    """
    if logging.getLevelName(settings.log_level.upper()) == logging.WARNING:
        logging.getLogger("services").setLevel(logging.ERROR)
