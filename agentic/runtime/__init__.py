"""The agent runtime: CrewAI agents, LLMs and MCP tools built from specs and workflows.

This is the only package that imports CrewAI. Importing it sets CrewAI's quiet defaults
first (no telemetry unless ``AGENTIC_CREWAI_TELEMETRY`` is true, no trace collection),
because CrewAI reads them when it is imported; CrewAI itself loads only when a function
below is first used.

Public API::

    execute_step(spec, *, store=None) -> StepResult          # one step, one mini-crew
    run_workflow_inprocess(wf, *, run_id, inputs, on_step, store=None, store_url=None) -> str
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentic.runtime.crew import run_workflow_inprocess
    from agentic.runtime.step import execute_step


def _quiet_crewai() -> None:
    from agentic.settings import get_settings

    if not get_settings().crewai_telemetry:
        # Without network CrewAI's telemetry adds ~10 s per kickoff (DESIGN §10).
        os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
    # Never ask on a terminal whether to upload traces, never collect them.
    os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")


_quiet_crewai()

_LAZY = {
    "execute_step": "agentic.runtime.step",
    "run_workflow_inprocess": "agentic.runtime.crew",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["execute_step", "run_workflow_inprocess"]
