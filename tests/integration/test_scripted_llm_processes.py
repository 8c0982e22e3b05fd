"""The scripted provider's crash and hang modes, which only a separate process can show."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings

import pytest

with warnings.catch_warnings():
    # Importing CrewAI emits an ImportWarning about its own package layout (crewai.rag).
    warnings.simplefilter("ignore", ImportWarning)
    from agentic.runtime.scripted import CRASH_EXIT_CODE

pytestmark = [pytest.mark.procs, pytest.mark.filterwarnings("ignore::ImportWarning")]


def _scripted_process(mode: str) -> subprocess.Popen[bytes]:
    code = textwrap.dedent(
        f"""
        import agentic.runtime
        from agentic.contracts import AgentProvider
        from agentic.runtime.scripted import build_scripted_llm
        p = AgentProvider.model_validate({{"id": "s", "type": "scripted", "role": "r",
            "goal": "g", "backstory": "b",
            "script": {{"replies": ["ok"], "fail": {{"times": 1, "mode": "{mode}"}}}}}})
        print("calling", flush=True)
        build_scripted_llm(p, step_id="s", topic="t", attempt=1).call("Go.")
        print("returned", flush=True)
        """
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)


def test_crash_mode_exits_the_process_with_status_3() -> None:
    proc = _scripted_process("crash")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == CRASH_EXIT_CODE
    assert b"calling" in out and b"returned" not in out


def test_hang_mode_never_returns_until_the_process_is_killed() -> None:
    proc = _scripted_process("hang")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"calling\n"  # the call has started
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.5)
    finally:
        proc.kill()
        proc.wait()
