"""The coordinator's run driver with in-memory effects: dispatch, retry, timeout, cancel,
dead letter, refusal, restore, and what it refuses to believe."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from agentic import failures
from agentic.contracts import (
    AgentProvider,
    RunEvent,
    RunRecord,
    RunRequest,
    ScriptedScript,
    StepError,
    StepResult,
    StepState,
    TaskConfig,
    WorkflowConfig,
)
from agentic.materialize import SpecFactory
from agentic.recording.attempts import record_attempt
from agentic.settings import Settings
from agentic.store import RunStore, open_store
from services.coordinator.memory import memory_deps
from services.coordinator.runs import COALESCE_FROM_STEPS, RunDriver
from services.coordinator.timers import NOT_LEADING_RECHECK_S

SETTINGS = Settings(retry_backoff_base_s=0.01, retry_backoff_max_s=0.01, retry_jitter=0.0)


def workflow(*steps: str, retries: int = 0) -> WorkflowConfig:
    provider = AgentProvider(
        id="a", type="scripted", role="r", goal="g", backstory="b", script=ScriptedScript()
    )
    tasks = [
        TaskConfig(
            id=s, agent_provider_id="a", description=f"do {s}", expected_output="o",
            retries=retries,
        )
        for s in steps
    ]  # fmt: skip
    return WorkflowConfig(
        name="w", agent_providers=[provider], tasks=tasks, task_sequence=list(steps)
    )


class Run:
    """One run driven in memory, and a worker that answers in the store."""

    def __init__(self, wf: WorkflowConfig, run_id: str = "r-1", **deps: Any) -> None:
        self.store: RunStore = open_store(f"memory://driver-{id(self)}")
        self.deps, self.bus = memory_deps(SETTINGS, self.store, **deps)
        self.run_id = run_id
        record = RunRecord(
            run_id=run_id,
            request=RunRequest(workflow=wf),
            workflow=wf,
            backend="nats",
            status="running",
            steps=[StepState(step_id=s) for s in wf.task_sequence],
        )
        self.store.create_run(record)
        specs = SpecFactory(wf, run_id=run_id, inputs={}, store_url=self.store.url,
                            settings=SETTINGS)  # fmt: skip
        self.driver = RunDriver(record, specs, self.deps)

    def types(self) -> list[str]:
        return self.bus.event_types(self.run_id)

    def record(self) -> RunRecord:
        return self.store.read_run(self.run_id)

    async def worker(self, step: str, attempt: int, *, output: str = "", error: Any = None):
        """A worker ran ``attempt``: it records the outcome and reports it."""
        await self.driver.on_step_event(self.event("step_started", step, attempt))
        status = "failed" if error else "succeeded"
        result = StepResult(run_id=self.run_id, step_id=step, attempt=attempt, status=status,
                            output=output, error=error)  # fmt: skip
        record_attempt(self.store, result)
        kind = "step_failed" if error else "step_succeeded"
        await self.driver.on_step_event(self.event(kind, step, attempt))

    def event(self, kind: str, step: str, attempt: int) -> RunEvent:
        return RunEvent(run_id=self.run_id, seq=0, type=kind, step_id=step, attempt=attempt)


async def test_a_run_dispatches_its_steps_in_turn_and_ends_after_run_json_is_final() -> None:
    run = Run(workflow("research", "write"))
    await run.driver.start({})
    assert [(s.step_id, s.attempt) for s in run.bus.steps] == [("research", 1)]
    assert run.types() == ["planned", "step_ready"]

    await run.worker("research", 1, output="notes")
    assert [(s.step_id, s.prior_all_earlier) for s in run.bus.steps] == [
        ("research", False),
        ("write", True),
    ]
    await run.worker("write", 1, output="article")

    record = run.record()
    assert (record.status, record.output) == ("succeeded", "article")
    assert run.types()[-1] == "succeeded" and run.bus.finished == ["r-1"]
    # Events the workers publish themselves are not published again by the coordinator.
    assert "step_started" not in run.types() and "step_succeeded" not in run.types()
    assert run.store.read_spec("r-1", "write").prior_all_earlier


async def test_a_long_run_writes_each_spec_at_once_and_its_run_json_at_most_once_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("services.coordinator.runs.SNAPSHOT_DELAY_S", 0.2)
    steps = [f"s{i:02d}" for i in range(COALESCE_FROM_STEPS + 1)]
    run = Run(workflow(*steps))
    await run.driver.start({})
    written = run.store.fs.cat_file(f"{run.store.root}/runs/r-1/run.json")

    await run.worker("s00", 1, output="first")

    assert run.store.read_spec("r-1", "s01").prior_all_earlier  # at once
    assert run.store.fs.cat_file(f"{run.store.root}/runs/r-1/run.json") == written  # not yet
    await asyncio.sleep(0.4)
    states = {s.step_id: s.status for s in run.record().steps}
    assert (states["s00"], states["s01"]) == ("succeeded", "ready")
    for step in steps[1:]:
        await run.worker(step, 1, output=step)
    record = run.record()  # the end is written at once
    assert record.status == "succeeded" and record.output == steps[-1]
    assert {s.status for s in record.steps} == {"succeeded"}


async def test_a_retryable_failure_is_retried_after_its_backoff_as_a_new_attempt() -> None:
    run = Run(workflow("only", retries=1))
    await run.driver.start({})
    await run.worker("only", 1, error=StepError(type="RateLimited", message="429",
                                                 retryable=True))  # fmt: skip
    assert run.types()[-1] == "step_retrying"
    assert run.store.read_result("r-1", "only") is None  # a retryable failure is not final

    await asyncio.sleep(0.1)  # the 10 ms backoff passes: the timer dispatches attempt 2
    assert [(s.step_id, s.attempt) for s in run.bus.steps] == [("only", 1), ("only", 2)]
    await run.worker("only", 2, output="done")
    assert run.record().status == "succeeded"


async def test_a_timeout_records_the_attempt_kills_it_and_commits_the_final_failure() -> None:
    run = Run(workflow("slow"))
    await run.driver.start({})
    started = run.event("step_started", "slow", 1)
    await run.driver.on_step_event(started)

    await run.driver.on_timeout("slow", 1)  # what the armed timer calls

    (attempt,) = run.store.read_attempts("r-1", "slow")
    assert attempt.error is not None and attempt.error.type == failures.TIMEOUT
    # `agentic show` fills "started" and "duration" from these
    assert attempt.timing.queued_at is not None
    assert attempt.timing.started_at == started.ts
    assert attempt.timing.finished_at is not None
    committed = run.store.read_result("r-1", "slow")
    assert committed is not None and committed.error == attempt.error
    assert run.bus.kills == [("r-1", "slow", 1)]
    assert run.types()[-2:] == ["step_failed", "failed"]  # published by the coordinator
    assert run.record().status == "failed"


async def test_a_success_committed_just_before_the_timeout_wins() -> None:
    run = Run(workflow("close"))
    await run.driver.start({})
    await run.driver.on_step_event(run.event("step_started", "close", 1))
    record_attempt(run.store, StepResult(run_id="r-1", step_id="close", attempt=1,
                                         status="succeeded", output="just in time"))  # fmt: skip

    await run.driver.on_timeout("close", 1)

    assert run.record().output == "just in time" and run.bus.kills == []


async def test_cancel_kills_what_runs_and_skips_what_never_started() -> None:
    run = Run(workflow("a", "b"))
    await run.driver.start({})
    await run.driver.on_step_event(run.event("step_started", "a", 1))

    assert await run.driver.cancel("stop") is True
    assert await run.driver.cancel("again") is False

    record = run.record()
    assert (record.status, record.error) == ("cancelled", "stop")
    assert [(s.step_id, s.status) for s in record.steps] == [("a", "cancelled"), ("b", "skipped")]
    assert run.bus.kills == [("r-1", "a", 1)] and run.types()[-1] == "cancelled"


async def test_a_dead_letter_fails_the_step_for_good_and_so_the_run() -> None:
    run = Run(workflow("crashy", retries=3))
    await run.driver.start({})
    (spec,) = run.bus.steps

    reason = await run.driver.on_dead_letter(spec, 5)

    assert "exhausted 5 deliveries" in reason
    committed = run.store.read_result("r-1", "crashy")
    assert committed is not None and committed.error is not None
    assert committed.error.type == failures.DEAD_LETTERED and not committed.error.retryable
    assert run.record().status == "failed" and "exhausted 5 deliveries" in run.record().error


async def test_a_refused_message_fails_its_step_and_other_sequences_are_not_this_runs() -> None:
    run = Run(workflow("guarded"))
    await run.driver.start({})
    (seq,) = run.driver._effects.queued

    assert await run.driver.on_refused(seq + 100, "unsigned") is False
    assert await run.driver.on_refused(seq, "not signed by a coordinator") is True

    committed = run.store.read_result("r-1", "guarded")
    assert committed is not None and committed.error is not None
    assert committed.error.type == failures.REFUSED
    assert "not signed by a coordinator" in committed.error.message


async def test_a_step_that_cannot_be_queued_fails_without_a_worker() -> None:
    run = Run(workflow("lost"))
    run.bus.refuse_pools.add("default")

    await run.driver.start({})

    (attempt,) = run.store.read_attempts("r-1", "lost")
    assert attempt.error is not None and attempt.error.type == failures.NOT_PUBLISHABLE
    assert run.record().status == "failed"


async def test_events_about_attempts_never_dispatched_or_never_stored_change_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="services.coordinator.runs")
    run = Run(workflow("step"))
    await run.driver.start({})

    await run.driver.on_step_event(run.event("step_succeeded", "step", 7))  # never dispatched
    await run.driver.on_step_event(run.event("step_succeeded", "step", 1))  # nothing stored

    assert run.record().status == "running" and run.types() == ["planned", "step_ready"]
    assert "not an attempt dispatched" in caplog.text
    assert "the store holds no result of that attempt" in caplog.text


async def test_a_restored_run_continues_from_the_store_and_leaves_started_steps_alone() -> None:
    run = Run(workflow("done", "busy", "next"))
    record_attempt(run.store, StepResult(run_id="r-1", step_id="done", attempt=1,
                                         status="succeeded", output="d"))  # fmt: skip
    run.bus.started["r-1"] = {"busy": 1}  # a worker holds attempt 1 of "busy"
    committed = {"done": run.store.read_result("r-1", "done")}

    await run.driver.resume(committed, {})  # type: ignore[arg-type]

    assert run.bus.steps == []  # "busy" is with its worker: not queued again
    assert run.store.read_spec("r-1", "busy").attempt == 1
    assert "busy" in run.driver._timers.timeouts  # its timeout is armed as if it started
    await run.worker("busy", 1, output="b")
    assert [(s.step_id, s.attempt) for s in run.bus.steps] == [("next", 1)]
    run.driver.close()


async def test_a_restored_run_whose_attempts_are_used_up_fails() -> None:
    run = Run(workflow("tired", retries=1))

    await run.driver.resume({}, {"tired": 2})

    assert run.record().status == "failed"
    assert "AttemptsExhausted" in (run.record().error or "")


async def test_timers_that_fire_while_the_lease_is_in_doubt_fire_again_later() -> None:
    run = Run(workflow("step"), leading=lambda: False)
    await run.driver.start({})

    await run.driver.on_timeout("step", 1)  # would fail the attempt: the state is never touched
    await run.driver.on_retry_due("step")

    timers = run.driver._timers
    assert set(timers.timeouts) == {"step"} and set(timers.retries) == {"step"}
    for handle in (timers.timeouts["step"], timers.retries["step"]):
        remaining = handle.when() - asyncio.get_running_loop().time()
        assert 0.5 * NOT_LEADING_RECHECK_S < remaining <= NOT_LEADING_RECHECK_S
        handle.cancel()
    assert run.store.read_attempts("r-1", "step") == []
    assert run.record().status == "running"


async def test_a_burst_of_submits_is_admitted_a_few_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each submit holds its request, workflow and specs until its run starts: a burst of
    # them must not all be in progress at once (the coordinator's memory, docs/benchmarks.md).
    import dataclasses

    from services.coordinator.control import SUBMITS_AT_ONCE, Control

    deps, _ = memory_deps(SETTINGS, open_store("memory://admission"))
    control = Control(SETTINGS, dataclasses.replace(deps, js=object(), timeline=object()))
    in_progress: set[bytes] = set()
    most = 0
    release = asyncio.Event()

    async def held_submit(raw: bytes) -> dict[str, Any]:
        nonlocal most
        in_progress.add(raw)
        most = max(most, len(in_progress))
        await release.wait()
        in_progress.discard(raw)
        return {"run_id": raw.decode()}

    monkeypatch.setattr(control, "_submit", held_submit)
    burst = [f"run-{i}".encode() for i in range(3 * SUBMITS_AT_ONCE)]
    replies = [asyncio.create_task(control.submit(raw)) for raw in burst]
    for _ in range(100):
        await asyncio.sleep(0)
    assert len(in_progress) == most == SUBMITS_AT_ONCE

    release.set()
    answered = await asyncio.gather(*replies)

    assert [a["run_id"] for a in answered] == [raw.decode() for raw in burst]
    assert most == SUBMITS_AT_ONCE and not in_progress


async def test_a_submit_the_store_cannot_create_is_answered_with_an_error_and_creates_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dataclasses
    import json

    from agentic.errors import StoreError
    from services.coordinator import control as control_module
    from tests.factories import inline_request, scripted_agent_data

    monkeypatch.setattr(control_module, "SUBMIT_STORE_WAIT_S", 0.5)
    settings = SETTINGS.model_copy(update={"allow_inline_providers": True})
    store = open_store("memory://outage")
    deps, _ = memory_deps(settings, store)
    control = control_module.Control(
        settings, dataclasses.replace(deps, js=object(), timeline=object())
    )
    attempts = 0

    def read_only(record: Any) -> bool:
        nonlocal attempts
        attempts += 1
        raise StoreError("cannot write run.json: [Errno 30] Read-only file system")

    monkeypatch.setattr(store, "create_run", read_only)
    raw = json.dumps(inline_request("outage-1", ["only"], scripted_agent_data("s"))).encode()

    with pytest.raises(StoreError, match=r"the run store is unavailable.*no run was created"):
        await control.submit(raw)

    assert attempts >= 2  # an outage is waited out a little before giving up
    assert not store.run_exists("outage-1")


async def test_a_restart_answers_at_once_and_restores_a_run_first_when_it_is_asked_about() -> None:
    import dataclasses
    import json

    from services.coordinator.control import Control

    settings = SETTINGS.model_copy(update={"allow_inline_providers": True})
    store = open_store(f"memory://restore-{id(settings)}")
    wf = workflow("first", "second")
    for n in range(3):
        store.create_run(
            RunRecord(run_id=f"open-{n}", request=RunRequest(workflow=wf), workflow=wf,
                      backend="nats", status="running")
        )  # fmt: skip
    store.create_run(  # not the coordinator's: never touched
        RunRecord(run_id="local-run", request=RunRequest(workflow=wf), workflow=wf,
                  backend="subprocess", status="running")
    )  # fmt: skip
    deps, bus = memory_deps(settings, store)

    class Timeline:  # what a run that ends asks of the events timeline
        def forget(self, run_id: str) -> None:
            pass

    deps = dataclasses.replace(deps, js=object(), timeline=Timeline())
    spawned: list[Any] = []
    control = Control(settings, dataclasses.replace(deps, spawn=spawned.append))

    await control.restore()  # lists the open markers only

    assert control.restoring == 3 and bus.steps == [] and len(spawned) == 1
    reply = await control.cancel(json.dumps({"run_id": "open-2"}).encode())
    assert reply["status"] == "cancelled"  # restored first (its first step out), then cancelled
    assert [(s.run_id, s.step_id) for s in bus.steps] == [("open-2", "first")]
    assert store.read_run("open-2").status == "cancelled" and control.restoring == 2

    await spawned[0]  # the background restore: the others, oldest first
    assert control.restoring == 0
    assert sorted(s.run_id for s in bus.steps) == ["open-0", "open-1", "open-2"]
    assert store.read_run("local-run").status == "running"
    assert [m.run_id for m in store.index.open_runs()] == ["open-0", "open-1", "local-run"]
    control.close()
