"""The ``inprocess`` and ``subprocess`` backends on real CrewAI with the scripted provider.

Every ``subprocess`` step is a real ``python -m agentic execute-step`` process that imports
CrewAI (about 3 s on this machine), so each test keeps to one or two steps.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from agentic.backends.local.launched import LauncherBackend
from agentic.backends.subprocess import StepProcess, SubprocessLauncher
from agentic.catalog import load_catalog, load_workflow
from agentic.contracts import (
    RunEvent,
    RunRecord,
    RunRequest,
    ScriptedFailure,
    TaskConfig,
    WorkflowConfig,
)
from agentic.settings import Settings
from agentic.store import open_store
from tests.factories import one_step, scripted_agent
from tests.parity import run_and_collect, run_workflow, stored_layout

pytestmark = pytest.mark.procs

REPO = Path(__file__).resolve().parents[2]
FAST_RETRY = Settings(retry_backoff_base_s=0.05, retry_backoff_max_s=0.1, retry_jitter=0.0)


class RecordingLauncher(SubprocessLauncher):
    """The real launcher, keeping every handle so tests can look at the processes."""

    handles: list[StepProcess]

    def launch(self, spec):  # type: ignore[no-untyped-def]
        handle = super().launch(spec)
        self.handles.append(handle)
        return handle


def recording_backend(handles: list[StepProcess]) -> LauncherBackend:
    def factory(store, settings):  # type: ignore[no-untyped-def]
        launcher = RecordingLauncher(store, settings)
        launcher.handles = handles
        return launcher

    return LauncherBackend("subprocess", factory, max_parallel=lambda s: 4)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return str(tmp_path / "store")


# --- parity ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["subprocess"])
def test_the_demo_gives_the_same_outputs_and_stored_steps_as_inprocess(
    backend: str, tmp_path: Path
) -> None:
    demo = load_workflow("demo", load_catalog([REPO / "config"]))
    inputs = {"topic": "parity checks"}
    reference_url, other_url = str(tmp_path / "inprocess"), str(tmp_path / backend)

    reference = run_workflow("inprocess", demo, inputs, reference_url, run_id="parity-run")
    outputs = run_and_collect(backend, demo, inputs, other_url, run_id="parity-run")

    assert reference.record.status == "succeeded"
    assert outputs == reference.outputs
    assert list(outputs) == ["research", "write", "edit"]
    assert "parity checks" in outputs["research"]
    # The tool really ran on both: its answer is quoted in the research notes.
    assert "lookup_fact" in outputs["research"]
    layout = stored_layout(other_url, "parity-run")
    assert layout == stored_layout(reference_url, "parity-run")
    for files in layout.values():
        assert files.count("result.json") == 1 and "spec.json" in files
    # The same spec (the steps it sees included), apart from the store it points to.
    specs = [
        open_store(url).read_spec("parity-run", "edit").model_dump(exclude={"store_url"})
        for url in (reference_url, other_url)
    ]
    assert specs[0] == specs[1] and specs[0]["prior_all_earlier"]


# --- subprocess: retries, failures, timeouts, crashes, cancel, parallelism ----------------


@pytest.mark.parametrize("backend", ["subprocess", "inprocess"])
def test_a_retryable_failure_succeeds_on_the_second_attempt(store_url: str, backend: str) -> None:
    agent = scripted_agent(fail=ScriptedFailure(times=1, mode="error", message="rate limited"))
    run = run_workflow(backend, one_step(agent, retries=1), {}, store_url, settings=FAST_RETRY)

    assert run.record.status == "succeeded"
    assert run.record.output == "only says hello to backends"
    store = open_store(store_url)
    first, second = store.read_attempts(run.record.run_id, "only")
    assert first.status == "failed" and first.error is not None
    assert first.error.type == "ScriptedError" and "rate limited" in first.error.message
    assert second.status == "succeeded"
    committed = store.read_result(run.record.run_id, "only")
    assert committed is not None and committed.attempt == 2
    assert [e.type for e in run.events if e.step_id] == [
        "step_ready", "step_started", "step_failed", "step_retrying",
        "step_ready", "step_started", "step_succeeded",
    ]  # fmt: skip


@pytest.mark.parametrize("backend", ["subprocess", "inprocess"])
def test_a_fatal_failure_is_not_retried(store_url: str, backend: str) -> None:
    agent = scripted_agent(fail=ScriptedFailure(times=5, mode="fatal", message="tool refused"))
    run = run_workflow(backend, one_step(agent, retries=3), {}, store_url, settings=FAST_RETRY)

    assert run.record.status == "failed"
    assert run.record.error is not None
    assert "step 'only' failed after 1 attempt (error not retryable)" in run.record.error
    assert "tool refused" in run.record.error
    store = open_store(store_url)
    assert len(store.read_attempts(run.record.run_id, "only")) == 1
    committed = store.read_result(run.record.run_id, "only")
    assert committed is not None and committed.status == "failed"


def test_a_step_past_its_timeout_is_killed_and_retried(store_url: str) -> None:
    handles: list[StepProcess] = []
    agent = scripted_agent(fail=ScriptedFailure(times=5, mode="hang"))
    wf = one_step(agent, timeout_s=2, retries=1)
    started = time.monotonic()
    run = run_workflow(recording_backend(handles), wf, {}, store_url, settings=FAST_RETRY)

    assert time.monotonic() - started < 10
    assert run.record.status == "failed"
    assert "after 2 attempts (retries exhausted)" in (run.record.error or "")
    attempts = open_store(store_url).read_attempts(run.record.run_id, "only")
    assert [(a.attempt, a.error.type if a.error else None) for a in attempts] == [
        (1, "StepTimeout"),
        (2, "StepTimeout"),
    ]
    assert len(handles) == 2 and not any(alive(h.pid) for h in handles)


def test_a_crashed_step_is_a_failed_attempt_with_its_exit_code(store_url: str) -> None:
    agent = scripted_agent(fail=ScriptedFailure(times=1, mode="crash"))
    run = run_workflow("subprocess", one_step(agent, retries=0), {}, store_url)

    assert run.record.status == "failed"
    (attempt,) = open_store(store_url).read_attempts(run.record.run_id, "only")
    assert attempt.error is not None and attempt.error.type == "StepCrashed"
    assert attempt.error.message.startswith("step process exited with code 3")
    assert "StepCrashed" in (run.record.error or "")


def test_cancel_kills_the_hanging_step_and_cancels_the_run(store_url: str) -> None:
    handles: list[StepProcess] = []
    backend = recording_backend(handles)
    events: list[RunEvent] = []
    cancelled_at: list[float] = []

    def cancel_once_started() -> None:
        while not any(e.type == "step_started" for e in list(events)):
            time.sleep(0.05)
        time.sleep(1.0)
        cancelled_at.append(time.monotonic())
        backend.cancel(reason="stopped by the test")

    agent = scripted_agent(fail=ScriptedFailure(times=5, mode="hang"))
    store = open_store(store_url)
    wf = one_step(agent)
    record = RunRecord(run_id="to-cancel", request=RunRequest(workflow=wf), workflow=wf,
                       backend="subprocess")  # fmt: skip
    store.create_run(record)
    threading.Thread(target=cancel_once_started, daemon=True).start()
    final = backend.run(record, store, Settings(), events.append)

    assert time.monotonic() - cancelled_at[0] < 5
    assert final.status == "cancelled" and final.error == "stopped by the test"
    assert store.read_run("to-cancel").status == "cancelled"
    assert events[-1].type == "cancelled"
    assert not alive(handles[0].pid)


def test_independent_steps_run_at_the_same_time(store_url: str) -> None:
    agent = scripted_agent(delay_s=0.5)
    tasks = [
        TaskConfig(id=step, agent_provider_id=agent.id, description=f"Do {step}.",
                   expected_output="text", depends_on=[])
        for step in ("left", "right")
    ]  # fmt: skip
    wf = WorkflowConfig(name="fan", agent_providers=[agent], tasks=tasks,
                        task_sequence=["left", "right"])  # fmt: skip
    run = run_workflow("subprocess", wf, {"topic": "parallelism"}, store_url)

    assert run.record.status == "succeeded"
    # Both step processes were running before either finished.
    kinds = [(e.type, e.step_id) for e in run.events if e.step_id]
    first_done = min(kinds.index(("step_succeeded", s)) for s in ("left", "right"))
    assert kinds.index(("step_started", "left")) < first_done
    assert kinds.index(("step_started", "right")) < first_done
    store = open_store(store_url)
    left, right = (store.read_result(run.record.run_id, step) for step in ("left", "right"))
    assert left is not None and right is not None
    assert left.worker is not None and right.worker is not None
    assert left.worker.pid != right.worker.pid


def test_the_subprocess_backend_refuses_a_store_other_processes_cannot_see() -> None:
    from agentic.errors import ConfigError

    agent = scripted_agent()
    with pytest.raises(ConfigError, match="memory://"):
        run_workflow("subprocess", one_step(agent), {}, "memory://private-store")


# --- inprocess: one kickoff, recorded like any other run ---------------------------------


def middle_step_fails(*, times: int, retries: int) -> WorkflowConfig:
    """first, second, third in sequence; the first ``times`` attempts of second fail."""
    good = scripted_agent("good")
    bad = scripted_agent("bad", fail=ScriptedFailure(times=times, mode="error", message="flaky"))
    tasks = [
        TaskConfig(id=step, agent_provider_id=agent, description=f"Do {step}.",
                   expected_output="text", retries=retries)
        for step, agent in (("first", "good"), ("second", "bad"), ("third", "good"))
    ]  # fmt: skip
    return WorkflowConfig(name="three", agent_providers=[good, bad], tasks=tasks,
                          task_sequence=["first", "second", "third"])  # fmt: skip


def test_inprocess_retries_a_failed_task_and_runs_the_rest_of_the_crew_from_it(
    store_url: str,
) -> None:
    wf = middle_step_fails(times=2, retries=3)
    run = run_workflow("inprocess", wf, {"topic": "failures"}, store_url, settings=FAST_RETRY)

    assert run.record.status == "succeeded", run.record.error
    store = open_store(store_url)
    assert store.read_run(run.record.run_id) == run.record
    attempts = {s: store.read_attempts(run.record.run_id, s) for s in ("first", "second", "third")}
    # The first task is not run again; the second fails twice and succeeds on attempt 3.
    assert [a.status for a in attempts["first"]] == ["succeeded"]
    assert [(a.attempt, a.status) for a in attempts["second"]] == [
        (1, "failed"), (2, "failed"), (3, "succeeded"),
    ]  # fmt: skip
    assert [a.status for a in attempts["third"]] == ["succeeded"]
    second = store.read_result(run.record.run_id, "second")
    assert second is not None and second.attempt == 3 and second.provider == "bad"
    # The third task still sees the earlier outputs although it ran in a later crew (the
    # later crew writes them into its task texts: test_replay_selection.py).
    third = store.read_spec(run.record.run_id, "third")
    assert third.prior_all_earlier and third.prior_steps == []
    assert [(e.type, e.step_id, e.attempt) for e in run.events if e.step_id == "second"] == [
        ("step_ready", "second", 1), ("step_started", "second", 1),
        ("step_failed", "second", 1), ("step_retrying", "second", 2),
        ("step_ready", "second", 2), ("step_started", "second", 2),
        ("step_failed", "second", 2), ("step_retrying", "second", 3),
        ("step_ready", "second", 3), ("step_started", "second", 3),
        ("step_succeeded", "second", 3),
    ]  # fmt: skip


def test_inprocess_fails_the_run_naming_the_task_when_its_retries_run_out(
    store_url: str,
) -> None:
    wf = middle_step_fails(times=5, retries=1)
    run = run_workflow("inprocess", wf, {"topic": "failures"}, store_url, settings=FAST_RETRY)

    assert run.record.status == "failed"
    assert "step 'second' failed after 2 attempts (retries exhausted)" in (run.record.error or "")
    assert "flaky" in (run.record.error or "")
    assert {s.step_id: s.status for s in run.record.steps} == {
        "first": "succeeded", "second": "failed", "third": "skipped",
    }  # fmt: skip
    store = open_store(store_url)
    assert len(store.read_attempts(run.record.run_id, "second")) == 2
    failed = store.read_result(run.record.run_id, "second")
    assert failed is not None and failed.status == "failed" and failed.attempt == 2
    assert store.read_result(run.record.run_id, "third") is None


def test_inprocess_stops_a_task_past_its_timeout_and_retries_it(store_url: str) -> None:
    # Each reply takes 1.5 s: a timeout that did not stop the task would let it succeed.
    slow = scripted_agent("slow", delay_s=1.5)
    wf = one_step(slow, timeout_s=0.5, retries=1)
    run = run_workflow("inprocess", wf, {}, store_url, settings=FAST_RETRY)

    assert run.record.status == "failed"
    assert "after 2 attempts (retries exhausted)" in (run.record.error or "")
    attempts = open_store(store_url).read_attempts(run.record.run_id, "only")
    assert [(a.attempt, a.error.type if a.error else None) for a in attempts] == [
        (1, "StepTimeout"),
        (2, "StepTimeout"),
    ]
    first = attempts[0].error
    assert first is not None and "exceeded its timeout of 0.5 s" in first.message


def test_ctrl_c_during_an_inprocess_run_records_it_cancelled(store_url: str) -> None:
    def interrupt_after_first_step(event: RunEvent) -> None:
        if event.type == "step_succeeded":
            raise KeyboardInterrupt

    agent = scripted_agent()
    tasks = [
        TaskConfig(id=step, agent_provider_id=agent.id, description=f"Do {step}.",
                   expected_output="text")
        for step in ("first", "second")
    ]  # fmt: skip
    wf = WorkflowConfig(name="two", agent_providers=[agent], tasks=tasks,
                        task_sequence=["first", "second"])  # fmt: skip
    store = open_store(store_url)
    record = RunRecord(run_id="interrupted", request=RunRequest(workflow=wf), workflow=wf,
                       backend="inprocess")  # fmt: skip
    store.create_run(record)
    from agentic.backends import get_backend

    final = get_backend("inprocess").run(record, store, Settings(), interrupt_after_first_step)

    assert final.status == "cancelled" and final.error == "cancelled by Ctrl-C"
    assert store.read_run("interrupted").status == "cancelled"
    first = store.read_result("interrupted", "first")
    assert first is not None and first.status == "succeeded"
    assert store.read_result("interrupted", "second") is None
