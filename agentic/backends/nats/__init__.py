"""The ``nats`` backend: the client of the event-driven pipeline (DESIGN §4).

The run is executed by the coordinator and workers listening on NATS; this backend only
hands it over and follows it:

1. it subscribes to the run's events (``agentic.events.<run_id>.>``, an ordered consumer
   on ``AGENTIC_EVENTS`` that delivers from the first stored event), *then* submits the
   run on ``agentic.runs.submit``, so no event can slip by between the two;
2. it forwards every event to ``on_event`` in order, until ``succeeded``, ``failed`` or
   ``cancelled``;
3. it returns the final ``run.json`` from the store (the source of truth). A client that
   does not share the coordinator's store (or cannot reach it) gets a record folded from
   the events instead, written to its own store so ``agentic show`` works there too.

A catalog workflow is submitted by name, for the coordinator to resolve against its own
catalog; a workflow file (or a planned goal) is submitted as the client resolved it, and the
coordinator accepts it only if every provider in it is the coordinator's catalog entry of that
id, unless it allows inline providers (``AGENTIC_ALLOW_INLINE_PROVIDERS``, docs/security.md).
A terminal event is believed only if ``run.json`` agrees, when the client shares the store.

Ctrl-C asks the coordinator to cancel the run and waits for ``cancelled``; a second Ctrl-C
stops waiting. The client survives a nats-server restart: the connection reconnects and
the ordered consumer resumes after the last event it saw.

Without ``AGENTIC_NATS_URL`` there is no server to talk to: the CLI then starts an
embedded stack (nats-server, a coordinator and a worker) for the run, see
:mod:`agentic.cli.stack`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from agentic.backends.base import EventCallback
from agentic.backends.nats.followed import Followed, final_record, mark_failed
from agentic.contracts import TERMINAL_EVENTS, RunEvent, RunRecord, RunRequest, StepResult
from agentic.errors import AgenticError, ConfigError
from agentic.settings import Settings

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from agentic.bus.follow import RunEvents
    from agentic.bus.requests import Reply
    from agentic.store import RunStore

log = logging.getLogger(__name__)

T = TypeVar("T")

CLIENT_NAME = "agentic-client"
# With no event for this long, the store is checked: a run that finished while its events
# were unavailable (expired, or published elsewhere) still ends the wait.
SILENCE_CHECK_S = 5.0
REFUSED = "the coordinator refused the run: {error}"


class NatsBackend:
    """Submits runs to the coordinator over NATS and follows their events.

    Args:
        url: NATS URL(s); default ``settings.nats_url``.
        detach: :meth:`run` returns as soon as the coordinator accepted the run.
        submit_timeout_s: How long to wait for the coordinator's reply to a submit or cancel.
        cancel_wait_s: After Ctrl-C, how long to wait for the ``cancelled`` event.
    """

    name = "nats"

    def __init__(
        self,
        *,
        url: str | None = None,
        detach: bool = False,
        submit_timeout_s: float = 10.0,
        cancel_wait_s: float = 30.0,
    ) -> None:
        self.url = url
        self.detach = detach
        self.submit_timeout_s = submit_timeout_s
        self.cancel_wait_s = cancel_wait_s

    def run(
        self,
        record: RunRecord,
        store: RunStore,
        settings: Settings,
        on_event: EventCallback,
        *,
        reused: Mapping[str, StepResult] | None = None,
    ) -> RunRecord:
        """Submit ``record`` (already created in ``store``) and follow it to its end.

        ``reused`` results are already committed to the run, where the coordinator takes
        them over when it starts it (the coordinator may not share this process's memory).

        Raises:
            ConfigError: no NATS URL, or bad connection settings.
            BusError: no coordinator answered the submit, or NATS is unreachable.
            KeyboardInterrupt: a second Ctrl-C, or the coordinator did not confirm the
                cancellation in time (the caller records the run cancelled).
        """
        if self.detach:
            self.submit(record, store, settings)
            return store.read_run(record.run_id)
        followed = _run_sync(self._follow(record, store, settings, on_event))
        if followed.refused is not None:
            return mark_failed(store, record, REFUSED.format(error=followed.refused))
        if followed.interrupted and followed.terminal is None:
            raise KeyboardInterrupt  # the coordinator did not confirm: record it here
        return final_record(store, record, followed)

    def submit(self, record: RunRecord, store: RunStore, settings: Settings) -> None:
        """Hand ``record`` to the coordinator and return once it accepted it.

        Raises:
            ConfigError: the coordinator refused the run (it is recorded failed).
            BusError: no coordinator answered.
        """
        error = _run_sync(self._submit_only(record, settings))
        if error is not None:
            message = REFUSED.format(error=error)
            mark_failed(store, record, message)
            raise ConfigError(message, run_id=record.run_id)

    # --- async ------------------------------------------------------------------------------

    async def _connect(self, settings: Settings) -> NATS:
        from agentic.bus import connect

        return await connect(settings, name=CLIENT_NAME, url=self.url)

    async def _submit_only(self, record: RunRecord, settings: Settings) -> str | None:
        from agentic.bus.requests import submit_run

        nc = await self._connect(settings)
        try:
            reply = await submit_run(
                nc,
                run_request(record),
                max_bytes=settings.max_message_bytes,
                timeout=self.submit_timeout_s,
            )
        finally:
            await nc.close()
        return reply.error

    async def _follow(
        self, record: RunRecord, store: RunStore, settings: Settings, on_event: EventCallback
    ) -> Followed:
        from agentic.bus.follow import RunEvents
        from agentic.bus.requests import submit_run

        nc = await self._connect(settings)
        followed = Followed()
        try:
            async with RunEvents(nc.jetstream(), record.run_id, settings) as events:
                reply = await submit_run(
                    nc,
                    run_request(record),
                    max_bytes=settings.max_message_bytes,
                    timeout=self.submit_timeout_s,
                )
                if not reply.ok:
                    followed.refused = reply.error
                    return followed
                _warn_about_another_store(reply.body.get("store"), store.url)
                watcher = _Watcher(events, followed, on_event, store, record.run_id)
                try:
                    await watcher.until_terminal()
                except asyncio.CancelledError:
                    _uncancel()  # Ctrl-C (asyncio.run cancels the main task): cancel the run
                    followed.interrupted = True
                    await self._cancel_and_wait(nc, watcher, record.run_id)
        finally:
            await nc.close()
        return followed

    async def _cancel_and_wait(self, nc: NATS, watcher: _Watcher, run_id: str) -> None:
        from agentic.bus.requests import cancel_run

        try:
            reply = await cancel_run(nc, run_id, timeout=self.submit_timeout_s)
        except AgenticError as exc:
            log.warning("cancelling run %s failed: %s", run_id, exc)
            return
        if not reply.ok:
            log.warning("the coordinator did not cancel run %s: %s", run_id, reply.error)
        try:
            await asyncio.wait_for(watcher.until_terminal(), self.cancel_wait_s)
        except TimeoutError:
            log.warning("run %s was not confirmed cancelled within %gs", run_id, self.cancel_wait_s)


class _Watcher:
    """Reads a run's events until a terminal one, forwarding each new event once."""

    def __init__(
        self,
        events: RunEvents,
        followed: Followed,
        on_event: EventCallback,
        store: RunStore,
        run_id: str,
    ) -> None:
        self._events = events
        self._followed = followed
        self._on_event = on_event
        self._store = store
        self._run_id = run_id
        self._seen: set[tuple[Any, ...]] = set()

    async def until_terminal(self) -> None:
        silent_since = time.monotonic()
        while self._followed.terminal is None:
            event = await self._events.next(timeout=1.0)
            if event is not None:
                silent_since = time.monotonic()
                await self._take(event)
            elif time.monotonic() - silent_since >= SILENCE_CHECK_S:
                silent_since = time.monotonic()
                if await self._finished_in_store():
                    return

    async def _take(self, event: RunEvent) -> None:
        if event.run_id != self._run_id:  # delivered on this run's subject, about another
            log.warning("ignoring an event of run %s among those of %s", event.run_id, self._run_id)
            return
        # A coordinator that restarts may publish an event again: forward it once.
        key = (event.seq, event.type, event.step_id, event.attempt)
        if key in self._seen:
            return
        if event.type in TERMINAL_EVENTS and not await self._confirmed(event):
            return
        self._seen.add(key)
        self._followed.events.append(event)
        self._on_event(event)
        if event.type in TERMINAL_EVENTS:
            self._followed.terminal = event

    async def _confirmed(self, event: RunEvent) -> bool:
        """Whether the run store agrees that the run ended as ``event`` says.

        The coordinator writes the final ``run.json`` before it publishes the terminal
        event, so a client that shares its store can check: a terminal event that the store
        contradicts (still running, or ended otherwise) was not the coordinator's and is
        ignored. A client with a store of its own (the coordinator never wrote this run's
        record there: it is still ``pending``) cannot check and believes the event.
        """
        try:
            stored = await asyncio.to_thread(self._store.read_run, self._run_id)
        except (AgenticError, OSError):
            return True
        if stored.status == "pending":
            return True
        if stored.status == event.type:
            self._followed.stored = stored
            return True
        log.warning(
            "ignoring a %s event of run %s: its run.json says %s",
            event.type,
            self._run_id,
            stored.status,
        )
        return False

    async def _finished_in_store(self) -> bool:
        try:
            stored = await asyncio.to_thread(self._store.read_run, self._run_id)
        except (AgenticError, OSError):
            return False
        if stored.is_terminal:
            self._followed.stored = stored
            return True
        return False


def request_cancel(
    settings: Settings, run_id: str, *, url: str | None = None, timeout: float = 10.0
) -> Reply:
    """Ask the coordinator to cancel ``run_id``; its reply says whether it did.

    Raises:
        ConfigError: no NATS URL, or an unsafe run id.
        BusError: NATS is unreachable or no coordinator answered.
    """
    from agentic.bus import connect
    from agentic.bus.requests import cancel_run
    from agentic.ids import check_id

    check_id(run_id, "run id")

    async def ask() -> Reply:
        nc = await connect(settings, name=CLIENT_NAME, url=url)
        try:
            return await cancel_run(nc, run_id, timeout=timeout)
        finally:
            await nc.close()

    return _run_sync(ask())


def run_request(record: RunRecord) -> RunRequest:
    """What the backend submits for ``record``.

    A catalog workflow is sent by name (the coordinator resolves it against its own
    catalog); any other workflow as resolved here, whose providers the coordinator accepts
    only if they are its catalog's entries (:mod:`agentic.catalog.trust`).
    """
    original = record.request
    if record.workflow is None:  # nothing resolved here (a replay): the coordinator resolves
        return original.model_copy(update={"run_id": record.run_id, "backend": "nats"})
    by_name = original.workflow_ref is not None and original.goal is None
    source: dict[str, Any] = (
        {"workflow_ref": original.workflow_ref} if by_name else {"workflow": record.workflow}
    )
    return RunRequest(
        run_id=record.run_id,
        inputs=dict(record.inputs),
        backend="nats",
        labels=dict(record.labels),
        replay_of=original.replay_of,
        **source,
    )


def _uncancel() -> None:
    # The cancellation was handled: later timeouts must see a task that is not cancelling.
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end from synchronous code.

    In a thread without an event loop (the CLI), ``asyncio.run`` gives Ctrl-C its
    task-cancelling behaviour; called from inside a running loop, the coroutine runs on a
    loop of its own in a helper thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        in_a_loop = False
    else:
        in_a_loop = True
    if not in_a_loop:
        return asyncio.run(coro)  # outside the except: errors do not chain to "no loop"
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="agentic-nats-client", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def create_backend(**options: Any) -> NatsBackend:
    """The ``nats`` backend; options: ``url``, ``detach``, ``submit_timeout_s``,
    ``cancel_wait_s``.

    Raises:
        ConfigError: an unknown option.
    """
    known = {"url", "detach", "submit_timeout_s", "cancel_wait_s"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"the nats backend takes no option {', '.join(unknown)}")
    return NatsBackend(**options)


__all__: list[str] = ["NatsBackend", "create_backend", "request_cancel", "run_request"]


def _warn_about_another_store(theirs: object, ours: str) -> None:
    """Say so when the coordinator records the run in another store than this client reads:
    what this client shows then comes from the run's events alone (no attempts, no tokens)."""
    if isinstance(theirs, str) and theirs != ours:
        log.warning(
            "the coordinator records runs in %s, this client reads %s: `agentic show` here "
            "shows only what the run's events said (set AGENTIC_RUN_STORE_URL to the same "
            "store for the whole record)",
            theirs,
            ours,
        )
