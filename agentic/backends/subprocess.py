"""The ``subprocess`` backend: each step attempt is ``agentic execute-step <spec-url>``.

The coordinator loop (:class:`~agentic.backends.local.driver.LocalDriver`) runs in the calling
process; every attempt is a child process with an argument list (never a shell) in its own
session, so that

* terminating a step kills its whole process tree (the step's MCP stdio servers included):
  SIGTERM to the process group, SIGKILL after a short grace;
* Ctrl-C in the terminal reaches only the CLI, which then cancels the run and terminates
  the children itself.

A child's stderr goes to a temporary file whose tail explains a crash. Its environment is
the caller's, with ``CREWAI_DISABLE_TELEMETRY=true`` unless telemetry is enabled in the
settings. The run store must be reachable from another process: ``memory://`` is not.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from agentic.backends.base import StepHealth
from agentic.backends.local.launched import LauncherBackend
from agentic.contracts import StepSpec
from agentic.errors import ConfigError
from agentic.processes import parent_death_signal
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.store import RunStore

TERMINATE_GRACE_S = 2.0
_TAIL_BYTES = 8192


@dataclass
class StepProcess:
    """The handle of one launched attempt."""

    spec: StepSpec
    process: subprocess.Popen[bytes]
    stderr: IO[bytes]
    pidfd: int | None
    exit_code: int | None = None
    stderr_tail: str = ""


class SubprocessLauncher:
    """Starts each step attempt as ``python -m agentic execute-step <spec-url>``.

    Args:
        store: The run store the specs are written to (gives each spec's URL).
        settings: ``crewai_telemetry`` decides the children's telemetry switch.
        python: The interpreter of the children (default: this one).
        grace_s: Seconds between SIGTERM and SIGKILL when terminating.
        env: The children's base environment (default: this process's).
    """

    def __init__(
        self,
        store: RunStore,
        settings: Settings,
        *,
        python: str = sys.executable,
        grace_s: float = TERMINATE_GRACE_S,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._store = store
        self._python = python
        self._grace_s = grace_s
        self._env = child_env(settings, os.environ if env is None else env)

    def command(self, spec: StepSpec) -> list[str]:
        """The argument list that runs ``spec``."""
        spec_url = self._store.spec_url(spec.run_id, spec.step_id)
        return [self._python, "-m", "agentic", "execute-step", spec_url]

    def launch(self, spec: StepSpec) -> StepProcess:
        """Start the attempt; stdout is discarded, stderr kept for the crash report."""
        # Closed in _reap once the step has exited, so no context manager here.
        stderr = tempfile.TemporaryFile(prefix=f"agentic-{spec.step_id}-", suffix=".stderr")  # noqa: SIM115
        try:
            process = subprocess.Popen(
                self.command(spec),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=self._env,
                start_new_session=True,
                close_fds=True,
                # Dies with the process driving the run, even one killed with SIGKILL: no
                # step keeps running (and spending tokens) for a run nobody drives.
                preexec_fn=parent_death_signal(signal.SIGKILL),
            )
        except BaseException:
            stderr.close()
            raise
        return StepProcess(spec=spec, process=process, stderr=stderr, pidfd=_pidfd(process.pid))

    def check(self, handle: StepProcess) -> StepHealth:
        """``running``, or ``exited`` with the exit code and the tail of stderr."""
        if handle.exit_code is None:
            code = handle.process.poll()
            if code is None:
                return StepHealth.running()
            self._reap(handle, code)
        return StepHealth.exited(handle.exit_code or 0, handle.stderr_tail)

    def terminate(self, handle: StepProcess) -> None:
        """SIGTERM the attempt's process group, SIGKILL it after the grace period."""
        if handle.exit_code is not None:
            return
        _signal_group(handle.process.pid, signal.SIGTERM)
        try:
            code = handle.process.wait(timeout=self._grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(handle.process.pid, signal.SIGKILL)
            code = handle.process.wait()
        self._reap(handle, code)

    def close(self) -> None:
        """Nothing to release: every step process is reaped when it ends or is stopped."""

    def wait(self, handles: Sequence[StepProcess], timeout: float) -> None:
        """Block until one of ``handles`` exits or ``timeout`` passes (a pidfd per process)."""
        fds = [h.pidfd for h in handles if h.pidfd is not None and h.exit_code is None]
        if len(fds) < len(handles) or not fds:
            time.sleep(min(timeout, 0.02))
            return
        # poll(), not select(): a busy CLI process may hold descriptors above FD_SETSIZE.
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        with contextlib.suppress(InterruptedError):
            poller.poll(timeout * 1000)

    def _reap(self, handle: StepProcess, code: int) -> None:
        """Record the exit, kill what the step left behind, free the file descriptors."""
        # Grandchildren (an MCP server the step started) must not outlive the step.
        _signal_group(handle.process.pid, signal.SIGKILL)
        handle.exit_code = code
        handle.stderr_tail = _tail(handle.stderr)
        handle.stderr.close()
        if handle.pidfd is not None:
            os.close(handle.pidfd)
            handle.pidfd = None


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


def _pidfd(pid: int) -> int | None:
    """A pidfd (Linux 5.3+) becomes readable when the process exits; None elsewhere."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return int(opener(pid))
    except OSError:
        return None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The child leads its own session, so its process group id is its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _tail(stream: IO[bytes]) -> str:
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(max(0, size - _TAIL_BYTES))
    return stream.read().decode("utf-8", errors="replace")
