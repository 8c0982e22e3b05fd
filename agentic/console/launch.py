"""Runs started from the console run as the CLI runs them: an ``agentic run`` or
``agentic replay`` child process with the same arguments a user would type.

So a run started here behaves exactly like one started in a terminal (the same request
building, planning, sessions, backends and exit codes), the console process never imports
CrewAI, and a run of a local backend (``inprocess``, ``subprocess``) is driven by its own
process, which the console follows through the store like any other. A ``nats`` run is
submitted with ``--detach``: the coordinator drives it.

Arguments are passed as a list (never a shell), each value as ``--option=value`` so that a
value starting with ``-`` stays a value. Each child's output goes to a file; the run page
shows its last lines when the child ended without creating its run (a refused input).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from agentic import redact

log = logging.getLogger(__name__)

STOP_GRACE_S = 10.0
TAIL_BYTES = 4000


@dataclass
class Launch:
    """One child process started for a run."""

    run_id: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def exit_code(self) -> int | None:
        return self.proc.poll()

    def tail(self) -> str:
        """The last lines the child printed, secret values masked."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - TAIL_BYTES))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return redact.current().text(text.strip())


class Launcher:
    """Starts and keeps the console's child processes.

    Args:
        env: Their environment (the console's, with the store URL it reads).
        command: How ``agentic`` is started (this interpreter's ``-m agentic``).
    """

    def __init__(
        self,
        env: dict[str, str],
        command: tuple[str, ...] = (sys.executable, "-m", "agentic"),
    ) -> None:
        self._env = env
        self._command = command
        self._dir = Path(tempfile.mkdtemp(prefix="agentic-console-"))
        self._launches: dict[str, Launch] = {}
        self._lock = threading.Lock()

    def start(self, run_id: str, args: list[str]) -> Launch:
        """Start ``agentic <args>`` for ``run_id``."""
        argv = [*self._command, *args]
        log_path = self._dir / f"{run_id}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of the console is for the console
            )
        launch = Launch(run_id, argv, proc, log_path)
        with self._lock:
            self._launches[run_id] = launch
        log.info("started %s for run %s (pid %d)", " ".join(args[:2]), run_id, proc.pid)
        return launch

    def get(self, run_id: str) -> Launch | None:
        with self._lock:
            return self._launches.get(run_id)

    def running(self) -> list[Launch]:
        with self._lock:
            return [x for x in self._launches.values() if x.exit_code is None]

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Interrupt every child still running, as Ctrl-C interrupts ``agentic run`` (its
        run ends ``cancelled``), and wait for them; then remove their output files."""
        left = self.running()
        for launch in left:
            try:
                launch.proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + grace_s
        for launch in left:
            try:
                launch.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "run %s: pid %d did not stop; killing it", launch.run_id, launch.proc.pid
                )
                launch.proc.kill()
                launch.proc.wait()
        shutil.rmtree(self._dir, ignore_errors=True)


def run_args(
    *,
    run_id: str,
    backend: str,
    workflow: str | None = None,
    goal: str | None = None,
    session: str | None = None,
    inputs: dict[str, str] | None = None,
    store_url: str,
) -> list[str]:
    """The ``agentic run`` arguments of a console start (``--detach`` on ``nats``)."""
    args = ["run", f"--run-id={run_id}", f"--backend={backend}", f"--store={store_url}"]
    if backend == "nats":
        args.append("--detach")
    for name, value in (inputs or {}).items():
        args.append(f"--input={name}={value}")
    if goal is not None:
        args.append(f"--goal={goal}")
        if session is not None:
            args.append(f"--session={session}")
    if workflow is not None:
        args += ["--", workflow]
    return args


def replay_args(
    *,
    source: str,
    new_id: str,
    from_step: str,
    backend: str,
    sets: list[str],
    store_url: str,
) -> list[str]:
    """The ``agentic replay`` arguments of a console replay."""
    args = [
        "replay",
        f"--run-id={new_id}",
        f"--from={from_step}",
        f"--backend={backend}",
        f"--store={store_url}",
    ]
    args += [f"--set={item}" for item in sets]
    return [*args, "--", source]
