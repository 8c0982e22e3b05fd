"""The local run driver, with a launcher that runs each step as a thread (no CrewAI, fast).

The thread launcher writes results into a real in-memory run store exactly as
``agentic execute-step`` does, so these tests pin what the driver reads and writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from agentic.backends.base import StepHealth
from agentic.backends.local import threads
from agentic.backends.local.driver import LocalDriver
from agentic.contracts import (
    AgentProvider,
    RunEvent,
    RunRecord,
    RunRequest,
    ScriptedScript,
    StepError,
    StepResult,
    StepSpec,
    TaskConfig,
    WorkflowConfig,
)
from agentic.ids import new_run_id
from agentic.recording.attempts import record_attempt
from agentic.settings import Settings
from agentic.store import RunStore, open_store

Behaviour = Callable[[StepSpec, threading.Event, RunStore], tuple[int, str]]
"""Runs one attempt: returns (exit code, stderr)."""


def succeed(output: str = "{step}@{attempt}") -> Behaviour:
    def run(spec: StepSpec, stop: threading.Event, store: RunStore) -> tuple[int, str]:
        text = output.format(step=spec.step_id, attempt=spec.attempt)
        record_attempt(store, result(spec, "succeeded", output=text))
        return 0, ""

    return run


def fail(*, retryable: bool, times: int = 99, then: Behaviour | None = None) -> Behaviour:
    def run(spec: StepSpec, stop: threading.Event, store: RunStore) -> tuple[int, str]:
        if spec.attempt > times and then is not None:
            return then(spec, stop, store)
        error = StepError(type="ScriptedError", message="boom", retryable=retryable)
        record_attempt(store, result(spec, "failed", error=error))
        return 1, ""

    return run


def crash(code: int, stderr: str) -> Behaviour:
    return lambda spec, stop, store: (code, stderr)


def hang(spec: StepSpec, stop: threading.Event, store: RunStore) -> tuple[int, str]:
    stop.wait()
    return -15, ""


def sleep_then(seconds: float, then: Behaviour) -> Behaviour:
    def run(spec: StepSpec, stop: threading.Event, store: RunStore) -> tuple[int, str]:
        if stop.wait(seconds):
            return -15, ""
        return then(spec, stop, store)

    return run


def result(spec: StepSpec, status: str, *, output: str = "", error: StepError | None = None):
    return StepResult(
        run_id=spec.run_id,
        step_id=spec.step_id,
        attempt=spec.attempt,
        status=status,  # type: ignore[arg-type]
        output=output,
        error=error,
    )


class ThreadLauncher(threads.ThreadLauncher):
    """The shipped thread launcher, each attempt running the behaviour its step id maps to."""

    def __init__(self, store: RunStore, behaviours: dict[str, Behaviour]) -> None:
        super().__init__(store, lambda spec, stop, st: behaviours[spec.step_id](spec, stop, st))


PROVIDER = AgentProvider(
    id="p", type="scripted", role="r", goal="g", backstory="b", script=ScriptedScript()
)


def workflow(*tasks: TaskConfig) -> WorkflowConfig:
    return WorkflowConfig(
        name="wf",
        topic="tests",
        agent_providers=[PROVIDER],
        tasks=list(tasks),
        task_sequence=[t.id for t in tasks],
    )


def task(step_id: str, **fields: object) -> TaskConfig:
    return TaskConfig(
        id=step_id,
        agent_provider_id="p",
        description=f"do {step_id}",
        expected_output="text",
        **fields,  # type: ignore[arg-type]
    )


SETTINGS = Settings(
    retry_backoff_base_s=0.01, retry_backoff_max_s=0.05, default_retries=2, retry_jitter=0.0
)


@dataclass
class Run:
    record: RunRecord
    store: RunStore
    launcher: ThreadLauncher
    events: list[RunEvent]


def run(
    wf: WorkflowConfig,
    behaviours: dict[str, Behaviour],
    *,
    settings: Settings = SETTINGS,
    max_parallel: int | None = None,
    during: Callable[[LocalDriver], None] | None = None,
) -> Run:
    store = open_store(f"memory://driver-{new_run_id()}")
    record = RunRecord(
        run_id=new_run_id(),
        request=RunRequest(workflow=wf),
        workflow=wf,
        backend="subprocess",
    )
    store.create_run(record)
    launcher = ThreadLauncher(store, behaviours)
    events: list[RunEvent] = []
    driver = LocalDriver(
        launcher, store, settings, events.append, max_parallel=max_parallel, poll_interval_s=0.01
    )
    if during is not None:
        threading.Thread(target=during, args=(driver,), daemon=True).start()
    final = driver.run(record)
    return Run(final, store, launcher, events)


def types(events: list[RunEvent]) -> list[tuple[str, str | None, int | None]]:
    return [(e.type, e.step_id, e.attempt) for e in events]


def test_a_sequence_runs_step_after_step_and_records_every_event_in_order() -> None:
    done = run(workflow(task("a"), task("b")), {"a": succeed(), "b": succeed()})
    assert done.record.status == "succeeded" and done.record.output == "b@1"
    assert types(done.events) == [
        ("step_ready", "a", 1),
        ("step_started", "a", 1),
        ("step_succeeded", "a", 1),
        ("step_ready", "b", 1),
        ("step_started", "b", 1),
        ("step_succeeded", "b", 1),
        ("succeeded", None, None),
    ]
    assert [e.seq for e in done.events] == list(range(7))
    stored = done.store.read_run(done.record.run_id)
    assert stored.status == "succeeded" and stored.finished_at is not None
    assert [(s.step_id, s.status, s.attempt) for s in stored.steps] == [
        ("a", "succeeded", 1),
        ("b", "succeeded", 1),
    ]


def test_the_spec_of_a_later_step_names_the_earlier_ones_whose_outputs_it_sees() -> None:
    done = run(workflow(task("a"), task("b")), {"a": succeed("facts"), "b": succeed()})
    spec_b = done.store.read_spec(done.record.run_id, "b")
    # By reference: the step's runtime reads "facts" from the store (test_runtime.py).
    # A sequence: b sees every step before it, which the spec says without listing them.
    assert spec_b.prior_all_earlier and spec_b.prior_output_max_chars == 4000
    assert spec_b.prior_outputs == {} and "facts" not in spec_b.task.description


def test_a_retryable_failure_is_retried_and_the_second_attempt_is_committed() -> None:
    behaviours = {"a": fail(retryable=True, times=1, then=succeed())}
    done = run(workflow(task("a")), behaviours)
    run_id = done.record.run_id
    assert done.record.status == "succeeded" and done.record.output == "a@2"
    attempts = done.store.read_attempts(run_id, "a")
    assert [(r.attempt, r.status) for r in attempts] == [(1, "failed"), (2, "succeeded")]
    assert done.store.read_result(run_id, "a").attempt == 2
    assert done.store.read_spec(run_id, "a").attempt == 2
    assert ("step_retrying", "a", 2) in types(done.events)


def test_a_fatal_failure_is_not_retried_and_stops_the_running_siblings() -> None:
    wf = workflow(
        task("bad", depends_on=[]),
        task("slow", depends_on=[]),
        task("after", depends_on=["bad", "slow"]),
    )
    behaviours = {"bad": fail(retryable=False), "slow": hang, "after": succeed()}
    done = run(wf, behaviours)
    assert done.record.status == "failed"
    assert "step 'bad' failed after 1 attempt" in (done.record.error or "")
    assert done.launcher.launched == [("bad", 1), ("slow", 1)]
    assert done.launcher.terminated == [("slow", 1)]
    committed = done.store.read_result(done.record.run_id, "bad")
    assert committed is not None and committed.status == "failed"
    statuses = {s.step_id: s.status for s in done.record.steps}
    assert statuses == {"bad": "failed", "slow": "cancelled", "after": "skipped"}


def test_a_step_that_exits_without_a_result_is_a_crash_with_its_exit_code_and_stderr() -> None:
    wf = workflow(task("a", retries=0))
    done = run(wf, {"a": crash(3, "Traceback ...\nMemoryError\n")})
    attempt = done.store.read_attempts(done.record.run_id, "a")[0]
    assert attempt.status == "failed" and attempt.error is not None
    assert attempt.error.type == "StepCrashed"
    assert "exited with code 3" in attempt.error.message
    assert attempt.error.message.endswith("MemoryError")
    assert done.record.status == "failed" and "StepCrashed" in (done.record.error or "")


def test_a_step_past_its_timeout_is_terminated_and_recorded_as_a_timeout() -> None:
    wf = workflow(task("a", timeout_s=0.2, retries=1))
    started = time.monotonic()
    done = run(wf, {"a": hang})
    assert time.monotonic() - started < 3
    assert done.launcher.terminated == [("a", 1), ("a", 2)]
    attempts = done.store.read_attempts(done.record.run_id, "a")
    assert [(r.attempt, r.error.type if r.error else None) for r in attempts] == [
        (1, "StepTimeout"),
        (2, "StepTimeout"),
    ]
    assert done.record.status == "failed"
    assert "after 2 attempts (retries exhausted)" in (done.record.error or "")


def test_no_more_steps_run_at_once_than_max_parallel() -> None:
    wf = workflow(*(task(f"s{i}", depends_on=[]) for i in range(4)))
    behaviours = {f"s{i}": sleep_then(0.1, succeed()) for i in range(4)}
    done = run(wf, behaviours, max_parallel=2)
    assert done.record.status == "succeeded"
    assert done.launcher.max_running == 2
    assert len(done.launcher.launched) == 4


def test_cancel_from_another_thread_terminates_the_running_step_and_cancels_the_run() -> None:
    def cancel_soon(driver: LocalDriver) -> None:
        time.sleep(0.2)
        driver.cancel("stop it")

    done = run(workflow(task("a"), task("b")), {"a": hang, "b": succeed()}, during=cancel_soon)
    assert done.record.status == "cancelled" and done.record.error == "stop it"
    assert done.launcher.terminated == [("a", 1)]
    assert types(done.events)[-1] == ("cancelled", None, None)
    assert done.store.read_run(done.record.run_id).status == "cancelled"


def test_ctrl_c_in_the_driving_thread_cancels_the_run_and_terminates_its_steps() -> None:
    class Interrupted(ThreadLauncher):
        def check(self, handle: threads.ThreadStep) -> StepHealth:
            if self.launched == [("a", 1)] and not self.terminated:
                raise KeyboardInterrupt
            return super().check(handle)

    store = open_store(f"memory://driver-{new_run_id()}")
    wf = workflow(task("a"))
    record = RunRecord(
        run_id=new_run_id(), request=RunRequest(workflow=wf), workflow=wf, backend="subprocess"
    )
    store.create_run(record)
    launcher = Interrupted(store, {"a": hang})
    final = LocalDriver(launcher, store, SETTINGS, lambda e: None).run(record)
    assert final.status == "cancelled" and final.error == "cancelled by Ctrl-C"
    assert launcher.terminated == [("a", 1)]


def test_a_step_that_cannot_be_launched_is_a_failed_attempt_and_is_retried() -> None:
    class FlakyLaunch(ThreadLauncher):
        def launch(self, spec: StepSpec) -> threads.ThreadStep:
            if spec.attempt == 1:
                raise OSError("no such executable")
            return super().launch(spec)

    store = open_store(f"memory://driver-{new_run_id()}")
    wf = workflow(task("a"))
    record = RunRecord(
        run_id=new_run_id(), request=RunRequest(workflow=wf), workflow=wf, backend="subprocess"
    )
    store.create_run(record)
    final = LocalDriver(FlakyLaunch(store, {"a": succeed()}), store, SETTINGS, lambda e: None).run(
        record
    )
    assert final.status == "succeeded"
    first = store.read_attempts(record.run_id, "a")[0]
    assert first.error is not None and first.error.type == "StepLaunchFailed"
    assert "no such executable" in first.error.message


@pytest.mark.parametrize("max_parallel", [0, -1])
def test_max_parallel_below_one_is_a_config_error(max_parallel: int) -> None:
    from agentic.errors import ConfigError

    store = open_store("memory://driver-bad")
    with pytest.raises(ConfigError, match="max_parallel"):
        LocalDriver(ThreadLauncher(store, {}), store, SETTINGS, print, max_parallel=max_parallel)


def test_reused_results_are_committed_to_the_new_run_and_never_launched() -> None:
    store = open_store(f"memory://driver-{new_run_id()}")
    wf = workflow(task("a"), task("b"))
    record = RunRecord(
        run_id=new_run_id(), request=RunRequest(workflow=wf), workflow=wf, backend="subprocess"
    )
    store.create_run(record)
    earlier = StepResult(
        run_id="old-run", step_id="a", attempt=2, status="succeeded", output="kept"
    )
    launcher = ThreadLauncher(store, {"b": succeed()})
    final = LocalDriver(launcher, store, SETTINGS, lambda e: None).run(
        record, reused={"a": earlier}
    )

    assert final.status == "succeeded"
    assert launcher.launched == [("b", 1)]
    reused = store.read_result(record.run_id, "a")
    assert reused is not None and reused.output == "kept" and reused.reused_from == "old-run"
    assert store.read_spec(record.run_id, "b").prior_all_earlier
