"""The ``subprocess`` backend: each step attempt runs in a process of its own.

The coordinator loop (:class:`~agentic.backends.local.driver.LocalDriver`) runs in the calling
process; every attempt is a step process forked from the warm runtime
(:mod:`agentic.runtime.warm`), which imported CrewAI once for the whole run: an attempt
starts in milliseconds instead of paying the import, and its ``timeout_s`` counts from
there. It does what ``agentic execute-step <spec-url>`` does
(:func:`~agentic.backends.local.execute.forked_step`), in its own session, so that

* terminating a step kills its whole process tree (the step's MCP stdio servers included):
  SIGTERM to the process group, SIGKILL after a short grace;
* Ctrl-C in the terminal reaches only the CLI, which then cancels the run and terminates
  the steps itself;
* a CLI killed with SIGKILL takes its steps along (the fork server dies with the thread
  that started it, the step processes with the fork server).

A step's stderr goes to a temporary file whose tail explains a crash. Its environment is
the caller's, with ``CREWAI_DISABLE_TELEMETRY=true`` unless telemetry is enabled in the
settings. The run store must be reachable from another process: ``memory://`` is not.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING

from agentic import tracing
from agentic.backends.base import StepHealth
from agentic.backends.local.execute import forked_step
from agentic.backends.local.launched import LauncherBackend
from agentic.contracts import StepSpec
from agentic.errors import ConfigError
from agentic.processes import signal_group, signal_step
from agentic.runtime import warm
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.store import RunStore

TERMINATE_GRACE_S = 2.0
_TAIL_BYTES = 8192

StepTarget = Callable[[str, str, Mapping[str, str]], None]
"""What a step process runs: ``target(spec_url, stderr_path, env)``, exiting 0, 1 or 2."""


@dataclass
class StepProcess:
    """The handle of one launched attempt."""

    spec: StepSpec
    process: BaseProcess
    pid: int
    stderr_path: str
    exit_code: int | None = None
    stderr_tail: str = ""


class SubprocessLauncher:
    """Starts each step attempt as a step process forked from the warm runtime.

    Args:
        store: The run store the specs are written to (gives each spec's URL).
        settings: ``crewai_telemetry`` decides the steps' telemetry switch.
        grace_s: Seconds between SIGTERM and SIGKILL when terminating.
        env: The steps' base environment (default: this process's).
        target: What a step process runs (default: what ``agentic execute-step`` does);
            a module-level function, since the fork server imports it by name.
    """

    def __init__(
        self,
        store: RunStore,
        settings: Settings,
        *,
        grace_s: float = TERMINATE_GRACE_S,
        env: Mapping[str, str] | None = None,
        target: StepTarget = forked_step,
    ) -> None:
        self._store = store
        self._grace_s = grace_s
        self._env = child_env(settings, os.environ if env is None else env)
        self._target = target
        # CrewAI loads in the fork server while the driver prepares the run's first steps.
        warm.start()

    def launch(self, spec: StepSpec) -> StepProcess:
        """Start the attempt; returns once it runs (the first one waits for the warm
        runtime to import CrewAI)."""
        spec_url = self._store.spec_url(spec.run_id, spec.step_id)
        fd, stderr_path = tempfile.mkstemp(prefix=f"agentic-{spec.step_id}-", suffix=".stderr")
        os.close(fd)
        try:
            env = {**self._env, **tracing.env_carrier()}  # TRACEPARENT: the run's trace
            process = warm.step_process(
                self._target, (spec_url, stderr_path, env), name=f"agentic-{spec.step_id}"
            )
            process.start()
        except BaseException:
            os.unlink(stderr_path)
            raise
        assert process.pid is not None  # started
        return StepProcess(spec=spec, process=process, pid=process.pid, stderr_path=stderr_path)

    def check(self, handle: StepProcess) -> StepHealth:
        """``running``, or ``exited`` with the exit code and the tail of stderr."""
        if handle.exit_code is None:
            code = handle.process.exitcode
            if code is None:
                return StepHealth.running()
            self._reap(handle, code)
        return StepHealth.exited(handle.exit_code or 0, handle.stderr_tail)

    def terminate(self, handle: StepProcess) -> None:
        """SIGTERM the attempt's process group, SIGKILL it after the grace period."""
        if handle.exit_code is not None:
            return
        signal_step(handle.pid, signal.SIGTERM)
        handle.process.join(self._grace_s)
        if handle.process.exitcode is None:
            signal_step(handle.pid, signal.SIGKILL)
            handle.process.join()
        self._reap(handle, handle.process.exitcode)

    def close(self) -> None:
        """Nothing to release: every step process is reaped when it ends or is stopped."""

    def wait(self, handles: Sequence[StepProcess], timeout: float) -> None:
        """Block until one of ``handles`` exits or ``timeout`` passes."""
        fds = [h.process.sentinel for h in handles if h.exit_code is None]
        if not fds:
            time.sleep(min(timeout, 0.02))
            return
        # poll(), not select(): a busy CLI process may hold descriptors above FD_SETSIZE.
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        with contextlib.suppress(InterruptedError):
            poller.poll(timeout * 1000)

    def _reap(self, handle: StepProcess, code: int | None) -> None:
        """Record the exit, kill what the step left behind, free its resources."""
        # Grandchildren (an MCP server the step started) must not outlive the step.
        signal_group(handle.pid, signal.SIGKILL)
        handle.exit_code = code if code is not None else -signal.SIGKILL
        handle.stderr_tail = _tail(handle.stderr_path)
        with contextlib.suppress(OSError):
            os.unlink(handle.stderr_path)
        with contextlib.suppress(ValueError):
            handle.process.close()


def child_env(settings: Settings, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of a step process: ``base`` plus CrewAI's telemetry switch."""
    env = dict(base)
    if not settings.crewai_telemetry:
        # Offline, CrewAI telemetry costs ~10 s per process (DESIGN §10).
        env["CREWAI_DISABLE_TELEMETRY"] = "true"
    return env


def create_backend(**options: object) -> LauncherBackend:
    """The ``subprocess`` backend; ``options`` go to :class:`SubprocessLauncher`."""

    def launcher(store: RunStore, settings: Settings) -> SubprocessLauncher:
        if store.url.startswith("memory://"):
            raise ConfigError(
                "the subprocess backend needs a run store its step processes can reach; "
                f"{store.url!r} lives in this process only (use a path, file:// or s3://)"
            )
        return SubprocessLauncher(store, settings, **options)  # type: ignore[arg-type]

    return LauncherBackend(
        "subprocess",
        launcher,
        max_parallel=lambda settings: settings.subprocess_max_parallel,
    )


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as stream:
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            stream.seek(max(0, size - _TAIL_BYTES))
            return stream.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
