"""Goal requests are planned in a child process of the coordinator.

A planner builds an LLM (CrewAI through :mod:`agentic.runtime`), which the coordinator
process never imports: goals go to one ``spawn`` child, started at the first goal and kept
for the next ones. The functions ``*_in_child`` run there.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import TypeVar

from agentic.catalog import catalog_dirs, load_catalog
from agentic.contracts import RunRecord, RunRequest
from agentic.errors import AgenticError, ConfigError, PlanError
from agentic.settings import Settings
from agentic.submit import prepare_run, with_run_id

T = TypeVar("T")


class GoalPlanner:
    """Plans goals in the planner process.

    Args:
        settings: Passed to the child (planner provider, step limit, store, catalogs).
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool: ProcessPoolExecutor | None = None

    async def plan(self, request: RunRequest) -> RunRecord:
        """A pending run for the goal, or an already stored failed run when planning failed.

        Raises:
            ConfigError: planning cannot start (no planner installed or configured).
        """
        if importlib.util.find_spec("agentic.planning") is None:
            raise ConfigError(
                "goal requests need the planner (agentic.planning), which this installation "
                "does not include; submit a workflow_ref or an inline workflow"
            )
        kind, payload = await self._run(plan_in_child, request.model_dump_json())
        if kind == "error":
            raise ConfigError(payload)
        return RunRecord.model_validate_json(payload)

    async def finished(self, record: RunRecord) -> None:
        """A planned goal's run finished: its planner session (if any) records the answer."""
        if record.request.planner is not None and record.request.planner.session is not None:
            await self._run(outcome_in_child, record.model_dump_json())

    def close(self) -> None:
        """Stop the planner process, if one was started."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def _run(self, fn: Callable[[str, str], T], document: str) -> T:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
        settings = json.dumps(self._settings.model_dump(mode="json"))
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, fn, document, settings)
        except BrokenProcessPool as exc:
            self.close()
            raise ConfigError(f"the planner process died: {exc}") from exc


def plan_in_child(request_json: str, settings_json: str) -> tuple[str, str]:
    """Plan one goal (in the planner process).

    Returns:
        ``("planned", record JSON)`` for a pending run; ``("failed", record JSON)`` for a
        goal the planner could not turn into a workflow, stored as a failed run like
        ``agentic run --goal`` does (``agentic show`` displays the planner's replies);
        ``("error", message)`` when planning could not start.
    """
    settings = Settings(**json.loads(settings_json))
    request = RunRequest.model_validate_json(request_json)
    try:
        request = with_run_id(request)
        catalog = load_catalog(catalog_dirs(settings))
        record = prepare_run(request, settings=settings, catalog=catalog)
    except PlanError as exc:
        from agentic.planning import failed_plan_record
        from agentic.store import open_store

        store = open_store(settings.run_store_url)
        return "failed", failed_plan_record(store, request, settings, exc).model_dump_json()
    except AgenticError as exc:
        return "error", str(exc)
    return "planned", record.model_dump_json()


def outcome_in_child(record_json: str, settings_json: str) -> None:
    """Record a finished goal's answer in its planner session (in the planner process)."""
    from agentic.planning import record_outcome
    from agentic.store import open_store

    settings = Settings(**json.loads(settings_json))
    record_outcome(open_store(settings.run_store_url), RunRecord.model_validate_json(record_json))
