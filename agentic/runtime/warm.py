"""Warm step runtimes: step processes forked from a server that has CrewAI loaded already.

Every local path that runs a step in a process of its own (a NATS worker's slots, the
``subprocess`` backend) starts it here, from ``multiprocessing``'s fork server: one process
per caller that imports the runtime (CrewAI included) once and forks a step process per
request, in milliseconds, sharing the loaded code copy-on-write. Importing this module
imports no CrewAI: the caller stays light, the fork server pays the import once::

    warm.start()                          # from a thread that lives as long as the caller
    process = warm.step_process(target, args)
    process.start()                       # blocks until the fork server is ready (once)

Each step process leads its own session (killing its process group stops what the step
started), ignores Ctrl-C (its caller decides), runs with the environment it is given, and
has its own CrewAI scratch directory. The fork server dies with the process that started
it (Linux ``PR_SET_PDEATHSIG``, see :mod:`agentic.runtime.preload`), and step processes die
with the fork server, so a caller killed with SIGKILL leaves no step running.

``docs/runtime.md`` ("Warm step runtimes") gives the measurements behind this choice.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from multiprocessing import get_context
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from typing import Any

from agentic import logs, redact, tracing
from agentic.processes import die_with_parent

PRELOAD = (
    "agentic.runtime.preload",  # CrewAI and the step runtime; freezes the heap for forking
    "agentic.runtime.host",  # what a worker slot runs
    "agentic.backends.local.execute",  # what a subprocess-backend step runs
)
"""Modules the fork server imports before it forks anything (names, not imports: the
runtime layer does not depend on the backends)."""

_lock = threading.Lock()


def context() -> ForkServerContext:
    """The ``multiprocessing`` context whose processes are forked from the warm server."""
    ctx = get_context("forkserver")
    assert isinstance(ctx, ForkServerContext)
    ctx.set_forkserver_preload(list(PRELOAD))
    return ctx


def start() -> None:
    """Start the fork server now, if it is not running, without waiting for its import.

    Call it from a thread that lives as long as the step processes: the server dies with
    the thread that started it (a server that died is started again on the next request).
    """
    from multiprocessing import forkserver

    with _lock:
        context()
        _short_socket_folder()
        forkserver.ensure_running()


# A Unix socket path has at most 107 bytes; the fork server's is <folder>/listener-<8 chars>.
_MAX_FOLDER = 80


def _short_socket_folder() -> None:
    """Move ``multiprocessing``'s private folder (0700) to ``/tmp`` when ``TMPDIR`` is so
    long that the fork server's socket could not be bound there (a pod's mounted ``/tmp``,
    a deep CI workspace)."""
    import atexit
    import shutil
    import tempfile
    from multiprocessing import process, util

    if len(util.get_temp_dir()) <= _MAX_FOLDER:
        return
    folder = tempfile.mkdtemp(prefix="agentic-mp-", dir="/tmp")
    # What util.get_temp_dir() returns from now on.
    process.current_process()._config["tempdir"] = folder  # type: ignore[attr-defined]
    atexit.register(shutil.rmtree, folder, True)


def server_pid() -> int | None:
    """The fork server's pid (None before :func:`start`)."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    return int(pid) if pid is not None else None


def step_process(
    target: Callable[..., Any], args: Sequence[Any], *, name: str = "agentic-step"
) -> BaseProcess:
    """A (not yet started) step process running ``target(*args)``; its ``start()`` blocks
    until the fork server has imported the runtime (only the first time)."""
    start()
    return context().Process(target=target, args=tuple(args), name=name)


def become_step_process(env: Mapping[str, str] | None = None) -> None:
    """The first thing a step process does: its own session, death with the fork server,
    ``env`` as its environment (None: the fork server's), Ctrl-C ignored, secrets masked
    in its output, and a CrewAI scratch directory of its own."""
    os.setsid()
    die_with_parent(signal.SIGKILL)
    if env is not None:
        os.environ.clear()
        os.environ.update(env)
    # Ctrl-C in a terminal reaches the caller, which decides what happens to the step.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # CrewAI prints an LLM's errors itself: keys a gateway echoes must not reach the log.
    redact.protect_environment()
    redact.mask_standard_streams()
    # CrewAI's own records (`logging.error(...)` on the root logger) get the caller's
    # format and the step's ids, instead of Python's bare `ERROR:root:` lines.
    logs.configure_from_settings()
    # Its spans are its own: a provider (and exporter thread) made here, after the fork.
    tracing.configure(tracing.STEP)
    from agentic import runtime

    runtime.own_scratch()


def leave_step_process() -> None:
    """The last thing a step process does when it ends by itself: remove its scratch."""
    from agentic import runtime

    runtime.drop_scratch()
