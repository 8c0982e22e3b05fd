"""One step attempt from its spec URL: what ``agentic execute-step`` (and a step Job) runs.

Imports only what a step needs: the spec, the store, the runtime. Never the catalog.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentic.contracts import StepResult
from agentic.errors import ConfigError, DecodeError, StoreError

if TYPE_CHECKING:
    from agentic.store import RunStore


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


def record_attempt(store: RunStore, result: StepResult) -> StepResult:
    """Write ``result`` as its attempt, and commit it when it is the step's final word.

    A success is committed; so is a failure that is not retryable (no other attempt will
    follow). A retryable failure is only an attempt: the coordinator may retry, and the
    last failure is committed by the coordinator once it gives up. An existing commit (an
    earlier attempt's, or a duplicate delivery's) is never overwritten.

    The commit is :meth:`RunStore.commit_attempt`: on a local store ``result.json`` is a
    second name of the attempt file just written (one write and fsync fewer on every
    step's critical path). If a duplicate delivery of the same attempt rewrites that file
    in between, its result is the one committed: still exactly one committed result of
    this attempt, which every reader of the store sees.

    Returns:
        The step's committed result, or ``result`` when nothing was committed.
    """
    final = result.status == "succeeded" or (
        result.error is not None and not result.error.retryable
    )
    if not final:
        store.write_attempt(result)
        return result
    committed, _ = store.commit_attempt(result)
    return committed
