"""One step attempt from its spec URL: what ``agentic execute-step`` (and a step Job) runs.

Imports only what a step needs: the spec, the store, the runtime. Never the catalog.
"""

from __future__ import annotations

from agentic.contracts import StepResult
from agentic.errors import ConfigError, DecodeError, StoreError
from agentic.recording.attempts import record_attempt


class SpecUnreadable(ConfigError):
    """The spec URL does not lead to a valid StepSpec (``execute-step`` exits 2)."""


def execute_spec_url(spec_url: str) -> StepResult:
    """Run the attempt that ``spec_url`` describes and record it in its run store.

    Returns:
        This attempt's result (also written to ``attempts/<n>.json``).

    Raises:
        SpecUnreadable: the spec is missing, unreadable or invalid.
    """
    from agentic.store import load_spec, open_store

    try:
        spec = load_spec(spec_url)
    except (ConfigError, DecodeError, StoreError, OSError, ValueError) as exc:
        raise SpecUnreadable(f"cannot read step spec {spec_url!r}: {exc}", cause=exc) from exc
    store = open_store(spec.store_url)
    from agentic.runtime import execute_step

    result = execute_step(spec, store=store)
    record_attempt(store, result)
    return result
