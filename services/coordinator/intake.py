"""From the bytes of a submit request to a run record the coordinator can start.

Every problem is an :class:`~agentic.errors.AgenticError` whose message becomes the
``{"error": …}`` reply: bad JSON, a request over ``max_request_bytes``, an unsafe id, an
unknown workflow, a provider defined inline (:mod:`agentic.catalog.trust`), a workflow over
``max_workflow_tasks`` or ``max_run_spec_bytes``, another backend than ``nats``, a goal
without a planner. Each is found before the run exists.

The coordinator does not hold the secrets of the workers, so it does not check a provider's
``required_env`` in its own environment: the worker that runs the step does, and fails it
with a message naming the variable.
"""

from __future__ import annotations

import asyncio

from agentic.catalog.dag import check_workflow
from agentic.catalog.env import WORKERS_ENV
from agentic.catalog.trust import CatalogCache, check_registered
from agentic.contracts import RunRecord, RunRequest, decode
from agentic.errors import ConfigError, DecodeError
from agentic.materialize import SpecFactory, check_run_size
from agentic.preparation import prepare_run
from agentic.settings import Settings
from services.coordinator.planning import GoalPlanner

NATS_BACKEND = "nats"
# Catalog files are read again at most this often: a burst of submits parses them once.
CATALOG_TTL_S = 2.0


def parse_request(raw: bytes, *, settings: Settings) -> RunRequest:
    """Decode a RunRequest, refusing one over ``max_request_bytes``.

    Raises:
        DecodeError: too large, not JSON, or not a valid RunRequest (the message says which
            field is wrong).
        ConfigError: it asks for another backend than ``nats``.
    """
    limit = min(settings.max_request_bytes, settings.max_message_bytes)
    if len(raw) > limit:
        raise DecodeError(
            f"RunRequest of {len(raw)} bytes exceeds the limit of {limit} bytes "
            "(AGENTIC_MAX_REQUEST_BYTES)"
        )
    request = decode(RunRequest, raw)
    if request.backend not in (None, NATS_BACKEND):
        raise ConfigError(
            f"this coordinator runs the nats backend; the request asks for {request.backend!r}"
        )
    return request


class Intake:
    """Turns requests into pending run records, and decides which records may run.

    Args:
        settings: Catalog roots, defaults and limits; the resulting records run on ``nats``.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings.model_copy(update={"execution_backend": NATS_BACKEND})
        # Requests are resolved in threads: a burst of them parses the catalog once.
        self.catalog = CatalogCache(self._settings, env=WORKERS_ENV, ttl_s=CATALOG_TTL_S)
        self.planner = GoalPlanner(self._settings)

    async def prepare(self, request: RunRequest, *, store_url: str) -> RunRecord:
        """A pending record for ``request``, its workflow resolved (or planned from a goal).

        Nothing is written: every refusal comes before the run exists.

        Raises:
            AgenticError: the request cannot become a run (the message says why): an inline
                provider, a workflow too big, an unknown workflow …
        """
        if request.workflow is not None and not self._settings.allow_inline_providers:
            check_registered(request.workflow, await self.catalog.aget())
        if request.goal is not None:
            record = await self.planner.plan(request)
        else:
            record = await asyncio.to_thread(self._resolve, request)
        record = record.model_copy(update={"backend": NATS_BACKEND})
        if not record.is_terminal:
            await asyncio.to_thread(self.admit, record, store_url=store_url)
        return record

    def admit(self, record: RunRecord, *, store_url: str) -> SpecFactory:
        """Check that ``record`` (submitted, or found pending in the store) may run here;
        returns what builds its specs.

        Raises:
            ConfigError: no workflow, an invalid step graph, a provider that is not the
                catalog's (unless inline providers are allowed), or a run over the limits.
        """
        wf = record.workflow
        if wf is None:
            raise ConfigError(f"run {record.run_id!r} has no resolved workflow")
        check_workflow(wf)
        if not self._settings.allow_inline_providers:
            check_registered(wf, self.catalog.get())
        specs = SpecFactory(
            wf,
            run_id=record.run_id,
            inputs=record.inputs,
            store_url=store_url,
            settings=self._settings,
        )
        check_run_size(specs, self._settings)
        return specs

    def close(self) -> None:
        """Stop the planner process, if one was started."""
        self.planner.close()

    def _resolve(self, request: RunRequest) -> RunRecord:
        return prepare_run(request, settings=self._settings, catalog=self.catalog.get())
