"""From the bytes of a submit request to a run record the coordinator can start.

Every problem is an :class:`~agentic.errors.AgenticError` whose message becomes the
``{"error": …}`` reply: bad JSON, a request over ``max_message_bytes``, an unsafe id, an
unknown workflow, another backend than ``nats``, a goal without a planner.

The coordinator does not hold the secrets of the workers, so it does not check a provider's
``required_env`` in its own environment: the worker that runs the step does, and fails it
with a message naming the variable.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Mapping

from agentic.catalog import Catalog, catalog_dirs, load_catalog
from agentic.contracts import RunRecord, RunRequest, decode
from agentic.errors import ConfigError
from agentic.settings import Settings
from agentic.submit import prepare_run
from services.coordinator.planning import GoalPlanner

NATS_BACKEND = "nats"
# Catalog files are read again at most this often: a burst of submits parses them once.
CATALOG_TTL_S = 2.0


class WorkersEnv(Mapping[str, str]):
    """An environment in which every variable is set: ``required_env`` is the workers' business."""

    def __getitem__(self, key: str) -> str:
        return "<checked by the worker>"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str)


WORKERS_ENV = WorkersEnv()


def parse_request(raw: bytes, *, max_bytes: int) -> RunRequest:
    """Decode a RunRequest, refusing one over ``max_bytes``.

    Raises:
        DecodeError: too large, not JSON, or not a valid RunRequest (the message says which
            field is wrong).
        ConfigError: it asks for another backend than ``nats``.
    """
    request = decode(RunRequest, raw, max_bytes=max_bytes)
    if request.backend not in (None, NATS_BACKEND):
        raise ConfigError(
            f"this coordinator runs the nats backend; the request asks for {request.backend!r}"
        )
    return request


class Intake:
    """Resolves requests into pending run records (the catalog is cached briefly).

    Args:
        settings: Catalog roots, defaults; the resulting records run on ``nats``.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings.model_copy(update={"execution_backend": NATS_BACKEND})
        self._catalog: Catalog | None = None
        self._loaded_at = 0.0
        # Requests are resolved in threads: a burst of them must parse the catalog once.
        self._loading = threading.Lock()
        self.planner = GoalPlanner(self._settings)

    async def prepare(self, request: RunRequest) -> RunRecord:
        """A pending record for ``request``, its workflow resolved (or planned from a goal).

        Raises:
            AgenticError: the request cannot become a run (the message says why).
        """
        if request.goal is not None:
            record = await self.planner.plan(request)
        else:
            record = await asyncio.to_thread(self._resolve, request)
        return record.model_copy(update={"backend": NATS_BACKEND})

    def close(self) -> None:
        """Stop the planner process, if one was started."""
        self.planner.close()

    def _resolve(self, request: RunRequest) -> RunRecord:
        return prepare_run(request, settings=self._settings, catalog=self._load_catalog())

    def _load_catalog(self) -> Catalog:
        with self._loading:
            if self._catalog is None or time.monotonic() - self._loaded_at > CATALOG_TTL_S:
                # An inline workflow needs no catalog on disk, so missing roots are skipped.
                self._catalog = load_catalog(
                    catalog_dirs(self._settings), env=WORKERS_ENV, missing_ok=True
                )
                self._loaded_at = time.monotonic()
            return self._catalog
