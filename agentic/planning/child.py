"""What the coordinator's planner process runs: a goal planned, a session's answer recorded.

The coordinator never imports the planner (it builds LLMs through CrewAI): it starts one
``spawn`` child and names these functions to it (``services.coordinator.planning``).
Arguments and results are JSON strings, so nothing but text crosses the process boundary.
"""

from __future__ import annotations

import json

from agentic.catalog import catalog_dirs, load_catalog
from agentic.contracts import RunRecord, RunRequest
from agentic.errors import AgenticError, PlanError
from agentic.preparation import prepare_run, with_run_id
from agentic.settings import Settings


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
