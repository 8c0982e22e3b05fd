"""``agentic coordinator --check`` / ``agentic worker --check``: a health exit code for probes.

Healthy means: NATS answers, the three agentic streams exist (and, for a worker, its pool's
consumer), the run store can be read, and (for a coordinator running on this host) its
heartbeat shows an event loop and consumers that still move. Each problem is reported on its
own line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import tempfile
import time
from pathlib import Path

import nats.errors
from nats.js.errors import NotFoundError

from agentic import names
from agentic.bus import connect
from agentic.errors import AgenticError
from agentic.redact import mask_url
from agentic.settings import Settings

# A probe must answer well within Kubernetes' default probe timeout budget.
CHECK_TIMEOUT_S = 8.0


async def problems(
    settings: Settings, *, pool: str | None = None, identity: str | None = None
) -> list[str]:
    """What keeps a service from working; empty when it can.

    Args:
        settings: NATS and store settings.
        pool: Also require the ``workers-<pool>`` consumer (workers).
        identity: The service's NATS identity (its inboxes, :func:`agentic.names.inbox_prefix`).
    """
    found = stall_problems(settings) if identity == "coordinator" else []
    found += await _bus_problems(settings, pool, identity)
    found += await asyncio.to_thread(_store_problems, settings.run_store_url)
    return found


async def _bus_problems(settings: Settings, pool: str | None, identity: str | None) -> list[str]:
    try:
        nc = await asyncio.wait_for(
            connect(settings, name="agentic-check", identity=identity), CHECK_TIMEOUT_S
        )
    except (AgenticError, TimeoutError) as exc:
        return [str(exc) or "NATS did not answer in time"]
    found = []
    try:
        js = nc.jetstream()
        for stream in (names.EVENTS_STREAM, names.STEPS_STREAM, names.DLQ_STREAM):
            try:
                await js.stream_info(stream)
            except NotFoundError:
                found.append(f"stream {stream} does not exist (the coordinator creates it)")
        if pool is not None:
            consumer = names.workers_consumer(pool)
            try:
                await js.consumer_info(names.STEPS_STREAM, consumer)
            except NotFoundError:
                found.append(f"consumer {consumer} does not exist")
    except nats.errors.Error as exc:
        found.append(f"JetStream did not answer: {type(exc).__name__}: {exc}")
    finally:
        await nc.close()
    return found


def _store_problems(url: str) -> list[str]:
    from agentic.store import open_store

    try:
        open_store(url).run_exists("agentic-health-check")
    except AgenticError as exc:
        return [f"run store {mask_url(url)}: {exc}"]
    return []


# --- the coordinator's heartbeat ------------------------------------------------------------

HEARTBEAT_EVERY_S = 2.0


def heartbeat_path(settings: Settings) -> Path:
    """Where a coordinator writes its heartbeat: the temp folder, one file per identity
    (a pod's own ``/tmp``, which its probes share)."""
    identity = settings.coordinator_id or socket.gethostname()
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in identity)
    return Path(tempfile.gettempdir()) / f"agentic-coordinator-{safe}.heartbeat"


class Heartbeat:
    """Proof, for ``--check``, that a coordinator's event loop and consumers still move.

    Each consumer loop calls :meth:`turn` whenever it comes round (at least once a second
    when idle); :meth:`run` writes, every :data:`HEARTBEAT_EVERY_S`, the time and how long
    the slowest loop has been stuck. A blocked event loop writes nothing; a loop stuck in a
    handler shows its age. Either makes ``--check`` fail after ``coordinator_stall_s``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._turns: dict[str, float] = {}

    def turn(self, loop: str) -> None:
        """``loop`` came round (fetched, or handled a message)."""
        self._turns[loop] = time.monotonic()

    def forget(self, loop: str) -> None:
        """``loop`` has stopped on purpose."""
        self._turns.pop(loop, None)

    async def run(self, stopping: asyncio.Event) -> None:
        """Write the heartbeat until ``stopping``; remove the file then."""
        try:
            while not stopping.is_set():
                await asyncio.to_thread(self._write)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), HEARTBEAT_EVERY_S)
        finally:
            with contextlib.suppress(OSError):
                self.path.unlink()

    def _write(self) -> None:
        now = time.monotonic()
        stuck = max((now - t for t in self._turns.values()), default=0.0)
        doc = {"pid": os.getpid(), "written_at": time.time(), "stuck_s": round(stuck, 3)}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.path)


def stall_problems(settings: Settings) -> list[str]:
    """What the heartbeat of a coordinator on this host says is wrong (nothing: no file)."""
    path = heartbeat_path(settings)
    try:
        doc = json.loads(path.read_text())
        pid, written_at, stuck = int(doc["pid"]), float(doc["written_at"]), float(doc["stuck_s"])
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [f"unreadable coordinator heartbeat {path}: {exc}"]
    if not _alive(pid):  # left by a coordinator that was killed: nobody to judge here
        return []
    age = time.time() - written_at
    limit = settings.coordinator_stall_s
    if age > limit:
        return [f"the coordinator's event loop wrote no heartbeat for {age:.0f} s ({path})"]
    if stuck > limit:
        return [f"a coordinator consumer has been stuck on one message for {stuck:.0f} s"]
    return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
