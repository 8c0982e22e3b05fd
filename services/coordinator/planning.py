"""Goal requests are planned in a child process of the coordinator.

A planner builds an LLM (CrewAI through :mod:`agentic.runtime`), which the coordinator
process never imports: goals go to one ``spawn`` child, started at the first goal and kept
for the next ones. The functions of :mod:`agentic.planning.child` run there, named rather
than imported.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from typing import Any

from agentic.contracts import RunRecord, RunRequest
from agentic.errors import ConfigError
from agentic.settings import Settings

# What the planner process runs (agentic.planning.child), by name.
PLAN = "agentic.planning.child:plan_in_child"
OUTCOME = "agentic.planning.child:outcome_in_child"


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
        kind, payload = await self._run(PLAN, request.model_dump_json())
        if kind == "error":
            raise ConfigError(payload)
        return RunRecord.model_validate_json(payload)

    async def finished(self, record: RunRecord) -> None:
        """A planned goal's run finished: its planner session (if any) records the answer."""
        if record.request.planner is not None and record.request.planner.session is not None:
            await self._run(OUTCOME, record.model_dump_json())

    def close(self) -> None:
        """Stop the planner process, if one was started."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def _run(self, function: str, document: str) -> Any:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
        settings = json.dumps(self._settings.model_dump(mode="json"))
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, _in_child, function, document, settings)
        except BrokenProcessPool as exc:
            self.close()
            raise ConfigError(f"the planner process died: {exc}") from exc


def _in_child(function: str, document: str, settings_json: str) -> Any:
    """Run ``module:function`` of the planner in the planner process.

    The function is named, not imported: the coordinator process never imports the planner
    (which builds LLMs through CrewAI); only the child does, when it runs this.
    """
    module, _, name = function.partition(":")
    return getattr(importlib.import_module(module), name)(document, settings_json)
