"""The agent runtime: CrewAI agents, LLMs and MCP tools built from specs and workflows.

This is the only package that imports CrewAI. Importing the package does nothing; before
CrewAI is imported, :func:`setup` sets its quiet defaults (no telemetry unless
``AGENTIC_CREWAI_TELEMETRY`` is true, no trace collection, a private scratch directory for
CrewAI's own storage), because CrewAI reads them when it is imported. The functions below
call it on first use; code that imports a submodule of the runtime directly (the step
process, the in-process backend, the planner) calls it first.

Public API::

    setup(settings=None)                                      # before CrewAI is imported
    execute_step(spec, *, store=None) -> StepResult          # one step, one mini-crew
    run_workflow_inprocess(wf, *, run_id, inputs, on_step, store=None, store_url=None) -> str
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentic.runtime.crew import run_workflow_inprocess
    from agentic.runtime.step import execute_step
    from agentic.settings import Settings


_ready = False


def setup(settings: Settings | None = None) -> None:
    """Prepare this process for CrewAI (call before CrewAI is imported; once is enough).

    Args:
        settings: ``crewai_telemetry`` (default: read from the environment).
    """
    global _ready
    if _ready:
        return
    if settings is None:
        from agentic.settings import get_settings

        settings = get_settings()
    if not settings.crewai_telemetry:
        # Without network CrewAI's telemetry adds ~10 s per kickoff (DESIGN §10).
        os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")
    # Never ask on a terminal whether to upload traces, never collect them.
    os.environ.setdefault("CREWAI_TRACING_ENABLED", "false")
    _private_crewai_storage()
    _ready = True


def own_scratch() -> None:
    """Give this process a CrewAI scratch directory of its own, if it runs in one it
    inherited (a step process forked from the warm runtime)."""
    _private_crewai_storage()


def drop_scratch() -> None:
    """Remove this process's own scratch directory now (a process that leaves through
    ``os._exit`` runs no ``atexit`` handler)."""
    path = os.environ.get("CREWAI_STORAGE_DIR")
    if path is not None and _owner(Path(path)) == os.getpid():
        shutil.rmtree(path, ignore_errors=True)


_SCRATCH_PREFIX = "agentic-crewai-"
# Memory-backed where the system has it: what CrewAI writes there is thrown away.
_SCRATCH_ROOT = "/dev/shm"


def _private_crewai_storage() -> None:
    """Give this process its own throwaway CrewAI storage directory.

    Every kickoff, CrewAI records its task outputs (for its own ``crewai replay``) in a
    SQLite database under ``~/.local/share/<name of the working directory>``: it takes a
    file lock and commits with fsync, several times per kickoff. agentic never reads that
    database (runs replay from the run store), yet on a busy disk it cost ~55 ms of a
    ~30 ms scripted step, and step processes sharing a working directory (the slots and
    workers of ``agentic up``) queued on its lock: two workers ran 10.7 steps/s sharing it
    and 21.5 with private ones. A ``CREWAI_STORAGE_DIR`` the user set is kept.
    """
    current = os.environ.get("CREWAI_STORAGE_DIR")
    if current is not None and not _inherited_scratch(current):
        return
    root = _SCRATCH_ROOT if os.access(_SCRATCH_ROOT, os.W_OK) else tempfile.gettempdir()
    _remove_orphans(Path(root))
    path = tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{os.getpid()}-", dir=root)
    os.environ["CREWAI_STORAGE_DIR"] = path  # CrewAI joins it to its data dir: absolute wins
    atexit.register(shutil.rmtree, path, True)


def _inherited_scratch(path: str) -> bool:
    """A scratch directory a parent process made: a child gets its own."""
    owner = _owner(Path(path))
    return owner is not None and owner != os.getpid()


def _owner(path: Path) -> int | None:
    name = path.name
    if not name.startswith(_SCRATCH_PREFIX):
        return None
    pid = name[len(_SCRATCH_PREFIX) :].split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def _remove_orphans(root: Path) -> None:
    """Remove the scratch directories of processes that are gone (a killed step process
    cannot clean up after itself)."""
    for path in root.glob(f"{_SCRATCH_PREFIX}*"):
        owner = _owner(path)
        if owner is not None and not _alive(owner):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


_LAZY = {
    "execute_step": "agentic.runtime.step",
    "run_workflow_inprocess": "agentic.runtime.crew",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        setup()
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["drop_scratch", "execute_step", "own_scratch", "run_workflow_inprocess", "setup"]
