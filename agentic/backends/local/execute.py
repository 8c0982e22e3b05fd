"""One step attempt from its spec URL: what ``agentic execute-step`` (and a step Job) runs.

Imports only what a step needs: the spec, the store, the runtime. Never the catalog.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

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
    from agentic import tracing
    from agentic.runtime import execute_step

    tracing.configure(tracing.STEP)  # a step Job's or step process's spans

    result = execute_step(spec, store=store)
    record_attempt(store, result)
    return result


def forked_step(spec_url: str, stderr_path: str, env: Mapping[str, str]) -> None:
    """A ``subprocess``-backend step process, forked from the warm runtime: what
    ``agentic execute-step`` does, with the same exit codes (0 succeeded, 1 failed, 2 the
    spec cannot be read). Its stdout is discarded and its stderr goes to ``stderr_path``,
    whose tail explains a crash."""
    _redirect_output(stderr_path)
    from agentic.runtime import warm

    warm.become_step_process(env)
    try:
        succeeded = execute_spec_url(spec_url).status == "succeeded"
    except SpecUnreadable as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    finally:
        warm.leave_step_process()
    sys.exit(0 if succeeded else 1)


def _redirect_output(stderr_path: str) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    err = os.open(stderr_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(devnull, 1)
    os.dup2(err, 2)
    os.close(devnull)
    os.close(err)
