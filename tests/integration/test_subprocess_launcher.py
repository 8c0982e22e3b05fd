"""The subprocess launcher, with stand-in step targets forked from the real warm runtime.

Each stand-in behaves according to its spec URL, so forks, exits, stderr, process groups and
signals are real while no test waits for a model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from agentic.backends.subprocess import StepProcess, SubprocessLauncher, child_env
from agentic.runtime import warm
from agentic.settings import Settings
from tests.factories import step_spec

pytestmark = pytest.mark.procs


def fake_step(spec_url: str, stderr_path: str, env: Mapping[str, str]) -> None:
    """A step process that does what its spec URL says (module level: forked by name)."""
    from agentic.backends.local.execute import _redirect_output

    _redirect_output(stderr_path)
    warm.become_step_process(env)
    out = os.environ.get("OUT", "")
    if spec_url == "crash":
        print("Traceback (most recent call last):\nRuntimeError: boom", file=sys.stderr)
        sys.exit(3)
    if spec_url == "quick":
        time.sleep(0.3)
    elif spec_url == "env":
        Path(out).write_text(os.environ.get("CREWAI_DISABLE_TELEMETRY", "") + "\n")
    elif spec_url == "crewai":
        Path(out).write_text(str("crewai" in sys.modules))
    elif spec_url in ("tree", "stubborn"):
        if spec_url == "stubborn":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen(["sleep", "300"])
        Path(out).write_text(str(child.pid))
        child.wait()
    sys.exit(0)


class _Store:
    """Only what the launcher asks a store: the URL of a spec."""

    url = "file:///nowhere"

    def spec_url(self, run_id: str, step_id: str) -> str:
        return step_id


@pytest.fixture
def launcher(tmp_path: Path) -> SubprocessLauncher:
    env = {**os.environ, "OUT": str(tmp_path / "out")}
    return SubprocessLauncher(_Store(), Settings(), grace_s=0.3, env=env, target=fake_step)  # type: ignore[arg-type]


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


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


def test_a_step_is_forked_from_the_warm_runtime_with_crewai_loaded(
    launcher: SubprocessLauncher, tmp_path: Path
) -> None:
    handle = launcher.launch(step_spec(step_id="tree"))
    read_pid(tmp_path / "out")
    assert parent_of(handle.pid) == warm.server_pid() != os.getpid()
    assert os.getpgid(handle.pid) == handle.pid  # a session of its own
    launcher.terminate(handle)

    (tmp_path / "out").unlink()
    wait_exit(launcher, launcher.launch(step_spec(step_id="crewai")))
    assert (tmp_path / "out").read_text() == "True"  # imported once, by the fork server


def test_a_crashed_step_reports_its_exit_code_and_the_tail_of_its_stderr(
    launcher: SubprocessLauncher,
) -> None:
    handle = launcher.launch(step_spec(step_id="crash"))
    wait_exit(launcher, handle)
    health = launcher.check(handle)
    assert health.exit_code == 3
    assert health.stderr_tail.endswith("RuntimeError: boom\n")
    assert "RuntimeError: boom" in health.crash_error().message
    assert not Path(handle.stderr_path).exists()


def test_waiting_wakes_up_as_soon_as_the_step_exits(launcher: SubprocessLauncher) -> None:
    handle = launcher.launch(step_spec(step_id="quick"))
    started = time.monotonic()
    launcher.wait([handle], 10.0)
    woke = time.monotonic() - started
    # The stand-in sleeps 0.3 s: the wait must end with it, not at its 10 s timeout.
    assert 0.25 < woke < 5.0
    assert launcher.check(handle).state == "exited"


def test_terminating_a_step_kills_the_processes_it_started(
    launcher: SubprocessLauncher, tmp_path: Path
) -> None:
    handle = launcher.launch(step_spec(step_id="tree"))
    grandchild = read_pid(tmp_path / "out")
    launcher.terminate(handle)
    assert not alive(handle.pid)
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
