"""The subprocess launcher, with a shell script standing in for the Python interpreter.

The script receives exactly the arguments a real step gets (``-m agentic execute-step URL``)
and behaves according to the URL, so exits, stderr, process groups and signals are real
while no test pays for importing CrewAI.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from agentic.backends.subprocess import StepProcess, SubprocessLauncher, child_env
from agentic.settings import Settings
from tests.factories import step_spec

pytestmark = pytest.mark.procs

FAKE_PYTHON = """\
#!/bin/sh
# $1=-m $2=agentic $3=execute-step $4=URL
case "$4" in
  crash) echo "Traceback (most recent call last):" >&2; echo "RuntimeError: boom" >&2; exit 3;;
  quick) sleep 0.3; exit 0;;
  env) echo "$CREWAI_DISABLE_TELEMETRY" > "$OUT"; exit 0;;
  tree) sleep 300 & echo $! > "$OUT"; wait;;
  stubborn) trap '' TERM; sleep 300 & echo $! > "$OUT"; wait;;
esac
"""


class _Store:
    """Only what the launcher asks a store: the URL of a spec."""

    url = "file:///nowhere"

    def spec_url(self, run_id: str, step_id: str) -> str:
        return step_id


@pytest.fixture
def launcher(tmp_path: Path) -> SubprocessLauncher:
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    env = {**os.environ, "OUT": str(tmp_path / "out")}
    return SubprocessLauncher(_Store(), Settings(), python=str(python), grace_s=0.3, env=env)  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_exit(launcher: SubprocessLauncher, handle: StepProcess, limit: float = 5.0) -> None:
    deadline = time.monotonic() + limit
    while launcher.check(handle).state == "running":
        assert time.monotonic() < deadline, "the step did not exit"
        launcher.wait([handle], 0.5)


def read_pid(path: Path) -> int:
    deadline = time.monotonic() + 5
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return int(path.read_text())


def test_the_step_command_is_an_argument_list_running_execute_step(
    launcher: SubprocessLauncher,
) -> None:
    command = launcher.command(step_spec(step_id="crash"))
    assert command[1:] == ["-m", "agentic", "execute-step", "crash"]


def test_a_crashed_step_reports_its_exit_code_and_the_tail_of_its_stderr(
    launcher: SubprocessLauncher,
) -> None:
    handle = launcher.launch(step_spec(step_id="crash"))
    wait_exit(launcher, handle)
    health = launcher.check(handle)
    assert health.exit_code == 3
    assert health.stderr_tail.endswith("RuntimeError: boom\n")
    assert "RuntimeError: boom" in health.crash_error().message


def test_waiting_wakes_up_as_soon_as_the_step_exits(launcher: SubprocessLauncher) -> None:
    handle = launcher.launch(step_spec(step_id="quick"))
    started = time.monotonic()
    launcher.wait([handle], 10.0)
    woke = time.monotonic() - started
    # The script sleeps 0.3 s: the wait must end with it, not at its 10 s timeout (the
    # upper bound leaves room for a slow interpreter start on a loaded machine).
    assert 0.25 < woke < 5.0
    assert launcher.check(handle).state == "exited"


def test_terminating_a_step_kills_the_processes_it_started(
    launcher: SubprocessLauncher, tmp_path: Path
) -> None:
    handle = launcher.launch(step_spec(step_id="tree"))
    grandchild = read_pid(tmp_path / "out")
    launcher.terminate(handle)
    assert not alive(handle.process.pid)
    deadline = time.monotonic() + 2
    while alive(grandchild):
        assert time.monotonic() < deadline, "the step's child outlived the step"
        time.sleep(0.01)


def test_a_step_that_ignores_sigterm_is_killed_after_the_grace_period(
    launcher: SubprocessLauncher, tmp_path: Path
) -> None:
    handle = launcher.launch(step_spec(step_id="stubborn"))
    read_pid(tmp_path / "out")
    started = time.monotonic()
    launcher.terminate(handle)
    assert 0.25 < time.monotonic() - started < 5.0
    assert launcher.check(handle).exit_code == -9


def test_steps_run_without_crewai_telemetry_unless_the_settings_enable_it(
    launcher: SubprocessLauncher, tmp_path: Path
) -> None:
    wait_exit(launcher, launcher.launch(step_spec(step_id="env")))
    assert (tmp_path / "out").read_text().strip() == "true"
    assert "CREWAI_DISABLE_TELEMETRY" not in child_env(Settings(crewai_telemetry=True), {})
    assert child_env(Settings(), {"PATH": "/bin"}) == {
        "PATH": "/bin",
        "CREWAI_DISABLE_TELEMETRY": "true",
    }
