"""The coordinator state machine, driven by event sequences as a backend would feed it."""

from __future__ import annotations

import random

import pytest

from agentic.contracts import (
    AgentProvider,
    ScriptedScript,
    StepError,
    StepResult,
    TaskConfig,
    WorkflowConfig,
)
from agentic.coordinator import (
    TIMEOUT_ERROR_TYPE,
    Command,
    Dispatch,
    Emit,
    FinishRun,
    RecordFailure,
    RunState,
    ScheduleRetry,
    Terminate,
)
from agentic.errors import CatalogError, ConfigError
from agentic.graph import context, dependencies
from agentic.settings import Settings

PROVIDER = AgentProvider(
    id="writer",
    type="scripted",
    role="Writer",
    goal="write",
    backstory="writes",
    script=ScriptedScript(replies=["done"]),
)
RETRYABLE = StepError(type="RateLimit", message="429 too many requests", retryable=True)
FATAL = StepError(type="ToolRefused", message="tool 'search' is not allowed", retryable=False)


def task(step_id: str, **fields: object) -> TaskConfig:
    return TaskConfig(
        id=step_id,
        agent_provider_id="writer",
        description=f"do {step_id}",
        expected_output=f"{step_id} result",
        **fields,  # type: ignore[arg-type]
    )


def workflow(*tasks: TaskConfig, sequence: list[str] | None = None) -> WorkflowConfig:
    return WorkflowConfig(
        name="wf",
        agent_providers=[PROVIDER],
        tasks=list(tasks),
        task_sequence=sequence or [t.id for t in tasks],
    )


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "default_retries": 2,
        "retry_backoff_base_s": 1.0,
        "retry_backoff_max_s": 60.0,
        "retry_jitter": 0.2,
        "default_step_timeout_s": 30.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def diamond() -> WorkflowConfig:
    return workflow(
        task("a"),
        task("b", depends_on=["a"]),
        task("c", depends_on=["a"]),
        task("d", depends_on=["b", "c"]),
    )


def start(wf: WorkflowConfig, **kwargs: object) -> tuple[RunState, list[Command]]:
    return RunState.start(wf, "run-1", settings(), rng=random.Random(1), **kwargs)  # type: ignore[arg-type]


def dispatches(commands: list[Command]) -> list[tuple[str, int]]:
    return [(c.step_id, c.attempt) for c in commands if isinstance(c, Dispatch)]


def only(commands: list[Command], kind: type) -> list:
    return [c for c in commands if isinstance(c, kind)]


def finish(commands: list[Command]) -> FinishRun | None:
    found = only(commands, FinishRun)
    return found[0] if found else None


def statuses(state: RunState) -> dict[str, str]:
    return {s.step_id: s.status for s in state.snapshot()}


# --- happy paths --------------------------------------------------------------------


def test_a_sequence_runs_one_step_at_a_time_and_returns_the_last_steps_output() -> None:
    state, commands = start(workflow(task("research"), task("outline"), task("write")))
    assert dispatches(commands) == [("research", 1)]

    commands = state.on_step_succeeded("research", 1, "facts")
    assert dispatches(commands) == [("outline", 1)]
    commands = state.on_step_succeeded("outline", 1, "plan")
    assert dispatches(commands) == [("write", 1)]
    commands = state.on_step_succeeded("write", 1, "the article")

    assert finish(commands) == FinishRun("succeeded", "the article", None)
    assert commands[-2] == Emit("succeeded", None, None, {"output": "the article"})
    assert state.status == "succeeded" and state.output == "the article"
    assert statuses(state) == {
        "research": "succeeded",
        "outline": "succeeded",
        "write": "succeeded",
    }


def test_every_dispatch_is_announced_by_a_step_ready_event_just_before_it() -> None:
    _, commands = start(workflow(task("a"), task("b")))
    assert commands == [
        Emit("step_ready", "a", 1, {"prior_steps": []}),
        Dispatch("a", 1, (), 30.0),
    ]


def test_a_diamond_dispatches_its_two_independent_steps_together_and_joins_them() -> None:
    state, commands = start(diamond())
    assert dispatches(commands) == [("a", 1)]

    commands = state.on_step_succeeded("a", 1, "A")
    assert dispatches(commands) == [("b", 1), ("c", 1)]

    assert dispatches(state.on_step_succeeded("c", 1, "C")) == []  # d still waits for b
    commands = state.on_step_succeeded("b", 1, "B")
    assert only(commands, Dispatch) == [Dispatch("d", 1, ("b", "c"), 30.0)]
    assert finish(state.on_step_succeeded("d", 1, "D")) == FinishRun("succeeded", "D", None)


def test_a_sequence_step_sees_the_outputs_of_all_earlier_steps() -> None:
    state, _ = start(workflow(task("a"), task("b"), task("c")))
    state.on_step_succeeded("a", 1, "A" * 10_000)
    commands = state.on_step_succeeded("b", 1, "B")
    # By reference: the step's runtime reads the outputs from the store and caps them.
    assert only(commands, Dispatch)[0].prior_steps == ("a", "b")


def test_a_dag_step_sees_only_its_direct_dependencies() -> None:
    wf = workflow(task("a"), task("b", depends_on=["a"]), task("c", depends_on=["b"]))
    state, _ = start(wf)
    state.on_step_succeeded("a", 1, "A")
    commands = state.on_step_succeeded("b", 1, "B")
    assert only(commands, Dispatch)[0].prior_steps == ("b",)


def test_a_dag_run_returns_the_output_of_the_last_sink_in_task_sequence_order() -> None:
    wf = workflow(
        task("summary", depends_on=["root"]),
        task("root", depends_on=[]),
        task("appendix", depends_on=["root"]),
        sequence=["root", "summary", "appendix"],
    )
    state, _ = start(wf)
    state.on_step_succeeded("root", 1, "R")
    state.on_step_succeeded("appendix", 1, "the appendix")
    commands = state.on_step_succeeded("summary", 1, "the summary")
    assert finish(commands) == FinishRun("succeeded", "the appendix", None)


def test_a_step_uses_its_own_timeout_and_otherwise_the_default() -> None:
    _, commands = start(workflow(task("a", timeout_s=5), task("b", depends_on=[])))
    assert [d.timeout_s for d in only(commands, Dispatch)] == [5.0, 30.0]


# --- retries, failures, timeouts ----------------------------------------------------------


def test_retryable_failures_are_retried_with_exponential_backoff_within_the_jitter() -> None:
    wf = workflow(task("flaky", retries=4))
    state, _ = RunState.start(wf, "run-1", settings(retry_backoff_max_s=3.0), rng=random.Random(7))
    delays = []
    for attempt in range(1, 5):
        commands = state.on_step_failed("flaky", attempt, RETRYABLE)
        retry = only(commands, ScheduleRetry)[0]
        assert retry.next_attempt == attempt + 1
        assert Emit("step_retrying", "flaky", attempt + 1, {"delay_s": retry.delay_s}) in commands
        delays.append(retry.delay_s)
        assert dispatches(state.on_retry_due("flaky")) == [("flaky", attempt + 1)]
    for delay, nominal in zip(delays, [1.0, 2.0, 3.0, 3.0], strict=True):
        assert nominal * 0.8 <= delay <= nominal * 1.2
    assert len(set(delays)) == 4  # jittered, not the bare nominal values


def test_the_same_seed_gives_the_same_retry_delays() -> None:
    def first_delay(seed: int) -> float:
        state, _ = RunState.start(workflow(task("a")), "r", settings(), rng=random.Random(seed))
        return only(state.on_step_failed("a", 1, RETRYABLE), ScheduleRetry)[0].delay_s

    assert first_delay(3) == first_delay(3)
    assert first_delay(3) != first_delay(4)


def test_a_fatal_error_fails_the_run_at_once_and_skips_the_steps_after_it() -> None:
    state, _ = start(workflow(task("a"), task("b"), task("c")))
    commands = state.on_step_failed("a", 1, FATAL)

    assert only(commands, ScheduleRetry) == []
    assert commands[0] == Emit(
        "step_failed", "a", 1, {"error": FATAL.model_dump(), "will_retry": False}, from_worker=True
    )
    done = finish(commands)
    assert done is not None and done.status == "failed"
    assert done.error == (
        "step 'a' failed after 1 attempt (error not retryable); "
        "last error: ToolRefused: tool 'search' is not allowed"
    )
    assert statuses(state) == {"a": "failed", "b": "skipped", "c": "skipped"}


def test_exhausted_retries_fail_the_run_naming_the_step_attempts_and_last_error() -> None:
    state, _ = start(workflow(task("fetch", retries=1), task("write")))
    state.on_step_failed("fetch", 1, RETRYABLE)
    state.on_retry_due("fetch")
    last = StepError(type="RateLimit", message="still 429", retryable=True)
    commands = state.on_step_failed("fetch", 2, last)

    done = finish(commands)
    assert done is not None and done.status == "failed"
    assert done.error == (
        "step 'fetch' failed after 2 attempts (retries exhausted); last error: RateLimit: still 429"
    )
    assert state.error == done.error
    assert state.snapshot()[0].attempt == 2


def test_default_retries_apply_to_a_step_that_sets_none() -> None:
    state, _ = RunState.start(workflow(task("a")), "r", settings(default_retries=0))
    assert finish(state.on_step_failed("a", 1, RETRYABLE)) is not None


def test_a_timed_out_step_is_terminated_then_retried_as_a_timeout_failure() -> None:
    state, _ = start(workflow(task("slow", timeout_s=5, retries=1)))
    state.on_step_started("slow", 1)
    commands = state.on_timeout("slow", 1)

    assert commands[0] == Terminate("slow", 1)
    failed = only(commands, Emit)[0]
    assert failed.type == "step_failed" and not failed.from_worker
    assert failed.data["error"]["type"] == TIMEOUT_ERROR_TYPE
    assert failed.data["error"]["message"] == "attempt 1 exceeded its timeout of 5 s"
    assert only(commands, ScheduleRetry)[0].next_attempt == 2
    assert dispatches(state.on_retry_due("slow")) == [("slow", 2)]

    commands = state.on_timeout("slow", 2)
    done = finish(commands)
    assert commands[0] == Terminate("slow", 2)
    assert done is not None and done.status == "failed"
    assert "StepTimeout" in (done.error or "") and "'slow'" in (done.error or "")


def test_a_failing_step_terminates_its_running_siblings_and_skips_the_rest() -> None:
    state, _ = start(diamond())
    state.on_step_succeeded("a", 1, "A")
    state.on_step_started("c", 1)
    commands = state.on_step_failed("b", 1, FATAL)

    assert only(commands, Terminate) == [Terminate("c", 1)]
    assert statuses(state) == {"a": "succeeded", "b": "failed", "c": "cancelled", "d": "skipped"}
    assert state.on_step_succeeded("c", 1, "C") == []  # the run is over


def test_a_step_waiting_for_its_retry_is_cancelled_when_a_sibling_fails_the_run() -> None:
    state, _ = start(diamond())
    state.on_step_succeeded("a", 1, "A")
    state.on_step_failed("c", 1, RETRYABLE)
    commands = state.on_step_failed("b", 1, FATAL)

    assert only(commands, Terminate) == []  # nothing of c is running
    assert statuses(state)["c"] == "cancelled"
    assert state.on_retry_due("c") == []


# --- cancellation and idempotence ---------------------------------------------------------


def test_cancel_terminates_every_running_step_and_ignores_everything_after() -> None:
    state, _ = start(diamond())
    state.on_step_succeeded("a", 1, "A")
    commands = state.on_cancel("user pressed Ctrl-C")

    assert only(commands, Terminate) == [Terminate("b", 1), Terminate("c", 1)]
    assert commands[-2:] == [
        Emit("cancelled", None, None, {"error": "user pressed Ctrl-C"}),
        FinishRun("cancelled", None, "user pressed Ctrl-C"),
    ]
    assert statuses(state) == {"a": "succeeded", "b": "cancelled", "c": "cancelled", "d": "skipped"}
    assert state.on_step_succeeded("b", 1, "B") == []
    assert state.on_step_failed("c", 1, RETRYABLE) == []
    assert state.on_cancel() == []
    assert state.status == "cancelled"


def test_a_duplicate_success_is_ignored_and_dispatches_nothing_twice() -> None:
    state, _ = start(workflow(task("a"), task("b")))
    assert dispatches(state.on_step_succeeded("a", 1, "A")) == [("b", 1)]
    assert state.on_step_succeeded("a", 1, "A") == []
    assert state.on_step_started("a", 1) == []


def test_events_about_an_older_attempt_are_ignored() -> None:
    state, _ = start(workflow(task("a", retries=2), task("b")))
    state.on_step_failed("a", 1, RETRYABLE)
    state.on_retry_due("a")  # attempt 2 is now dispatched

    assert state.on_step_failed("a", 1, RETRYABLE) == []  # redelivered failure of attempt 1
    assert state.on_step_succeeded("a", 1, "late") == []
    assert state.on_timeout("a", 1) == []
    assert state.on_step_started("a", 1) == []
    assert statuses(state)["a"] == "ready"
    assert dispatches(state.on_step_succeeded("a", 2, "A")) == [("b", 1)]


def test_a_second_retry_due_for_the_same_retry_dispatches_once() -> None:
    state, _ = start(workflow(task("a")))
    state.on_step_failed("a", 1, RETRYABLE)
    assert dispatches(state.on_retry_due("a")) == [("a", 2)]
    assert state.on_retry_due("a") == []


def test_a_success_that_lands_after_its_timeout_still_counts() -> None:
    # The attempt committed its result just before the driver's timer fired: the store wins.
    state, _ = start(workflow(task("a"), task("b")))
    state.on_timeout("a", 1)
    assert dispatches(state.on_step_succeeded("a", 1, "A")) == [("b", 1)]
    assert state.on_retry_due("a") == []


def test_events_about_unknown_steps_are_ignored() -> None:
    state, _ = start(workflow(task("a")))
    assert state.on_step_succeeded("zzz", 1, "?") == []


# --- restore and reuse ------------------------------------------------------------------


def committed(step_id: str, output: str, attempt: int = 1) -> StepResult:
    return StepResult(
        run_id="run-1", step_id=step_id, attempt=attempt, status="succeeded", output=output
    )


def test_restore_dispatches_only_the_steps_without_a_committed_result() -> None:
    state, commands = RunState.restore(
        diamond(),
        "run-1",
        settings(),
        committed={"a": committed("a", "A"), "b": committed("b", "B", attempt=2)},
        attempts_seen={},
    )
    assert only(commands, Dispatch) == [Dispatch("c", 1, ("a",), 30.0)]
    assert statuses(state) == {"a": "succeeded", "b": "succeeded", "c": "ready", "d": "pending"}
    commands = state.on_step_succeeded("c", 1, "C")
    assert only(commands, Dispatch) == [Dispatch("d", 1, ("b", "c"), 30.0)]


def test_restore_continues_a_step_after_its_last_ended_attempt() -> None:
    _, commands = RunState.restore(
        workflow(task("a", retries=2)), "run-1", settings(), {}, attempts_seen={"a": 2}
    )
    assert dispatches(commands) == [("a", 3)]


def test_restore_fails_a_step_whose_attempts_are_used_up() -> None:
    state, commands = RunState.restore(
        workflow(task("a"), task("b", retries=1)),
        "run-1",
        settings(),
        committed={"a": committed("a", "A")},
        attempts_seen={"b": 2},
    )
    done = finish(commands)
    assert dispatches(commands) == []
    assert done is not None and done.status == "failed" and "'b'" in (done.error or "")
    assert statuses(state) == {"a": "succeeded", "b": "failed"}


def test_restore_of_a_fully_committed_run_finishes_it() -> None:
    _, commands = RunState.restore(
        workflow(task("a"), task("b")),
        "run-1",
        settings(),
        committed={"a": committed("a", "A"), "b": committed("b", "B")},
        attempts_seen={},
    )
    assert commands == [
        Emit("succeeded", None, None, {"output": "B"}),
        FinishRun("succeeded", "B", None),
    ]


def test_restore_with_a_committed_failure_fails_the_run() -> None:
    failure = StepResult(run_id="run-1", step_id="a", attempt=1, status="failed", error=FATAL)
    state, commands = RunState.restore(
        workflow(task("a"), task("b")), "run-1", settings(), {"a": failure}, {}
    )
    assert finish(commands) is not None and state.status == "failed"
    assert "ToolRefused" in (state.error or "")
    assert statuses(state) == {"a": "failed", "b": "skipped"}


def test_a_replay_reuses_results_and_dispatches_from_the_first_step_not_reused() -> None:
    state, commands = start(
        workflow(task("a"), task("b"), task("c")), reused={"a": committed("a", "A")}
    )
    assert commands[0] == Emit("step_succeeded", "a", 1, {"reused": True})
    assert statuses(state) == {"a": "succeeded", "b": "ready", "c": "pending"}
    assert only(commands, Dispatch) == [Dispatch("b", 1, ("a",), 30.0)]


def test_a_replay_cannot_reuse_a_failed_result() -> None:
    failure = StepResult(run_id="run-0", step_id="a", attempt=1, status="failed", error=FATAL)
    with pytest.raises(ConfigError, match="cannot reuse step 'a'"):
        start(workflow(task("a")), reused={"a": failure})


# --- graph ----------------------------------------------------------------------------


def test_a_sequence_chains_its_steps_and_a_dag_keeps_only_explicit_dependencies() -> None:
    seq = workflow(task("a"), task("b"), task("c"))
    assert dependencies(seq) == {"a": [], "b": ["a"], "c": ["b"]}
    assert context(seq) == {"a": [], "b": ["a"], "c": ["a", "b"]}
    assert dependencies(diamond()) == {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    assert context(diamond())["d"] == ["b", "c"]


def test_a_dependency_cycle_is_rejected_before_the_run_starts() -> None:
    wf = workflow(task("a", depends_on=["b"]), task("b", depends_on=["a"]), task("c"))
    with pytest.raises(CatalogError, match=r"depends_on cycle: a -> b -> a"):
        start(wf)


def test_a_dependency_on_an_unknown_step_names_the_field_of_the_task() -> None:
    wf = workflow(task("a"), task("b", depends_on=["nope"]))
    with pytest.raises(
        CatalogError, match=r"workflow\.tasks\[1\]\.depends_on: unknown task 'nope'"
    ):
        dependencies(wf)


# --- fallback chains ------------------------------------------------------------------

UNAVAILABLE = StepError(
    type="RateLimitError", message="429 slow down", retryable=True, provider_failed=True
)


def chained(retries: int, *fallbacks: str) -> WorkflowConfig:
    """One step on ``writer``, which falls back to ``fallbacks`` in order."""
    backups = [PROVIDER.model_copy(update={"id": name}) for name in fallbacks]
    primary = PROVIDER.model_copy(update={"fallback": list(fallbacks)})
    return WorkflowConfig(
        name="wf",
        agent_providers=[primary, *backups],
        tasks=[task("a", retries=retries)],
        task_sequence=["a"],
    )


def providers(commands: list[Command]) -> list[str | None]:
    return [c.provider for c in commands if isinstance(c, Dispatch)]


def test_a_provider_failure_moves_the_next_attempt_down_the_chain_at_once() -> None:
    state, commands = start(chained(0, "backup", "last"))
    assert providers(commands) == [None]  # the task's own provider: the spec as materialized

    commands = state.on_step_failed("a", 1, UNAVAILABLE)
    # No retries configured, and still a second attempt: each provider gets its turn, now.
    assert only(commands, ScheduleRetry) == [ScheduleRetry("a", 2, 0.0)]
    commands = state.on_retry_due("a")
    assert providers(commands) == ["backup"]
    ready = only(commands, Emit)[0]
    assert ready.data == {"prior_steps": [], "provider": "backup", "fallback": True}

    state.on_step_failed("a", 2, UNAVAILABLE)
    assert providers(state.on_retry_due("a")) == ["last"]
    # Past the end of the chain the step has its own retries (none): the run fails.
    end = finish(state.on_step_failed("a", 3, UNAVAILABLE))
    assert end is not None and end.status == "failed"
    assert "after 3 attempts" in (end.error or "")


def test_other_failures_retry_on_the_same_provider_and_the_chain_keeps_the_retries() -> None:
    state, _ = start(chained(1, "backup"))
    state.on_step_failed("a", 1, RETRYABLE)  # not the provider's fault: same provider
    assert providers(state.on_retry_due("a")) == [None]
    state.on_step_failed("a", 2, UNAVAILABLE)
    assert providers(state.on_retry_due("a")) == ["backup"]
    # The one retry was used on the first provider; the move to the backup did not use one.
    end = finish(state.on_step_failed("a", 3, RETRYABLE))
    assert end is not None and end.status == "failed"


def test_a_timed_out_step_stays_on_its_provider() -> None:
    state, _ = start(chained(1, "backup"))
    state.on_timeout("a", 1)
    assert providers(state.on_retry_due("a")) == [None]


def test_a_fatal_provider_error_does_not_fall_back() -> None:
    state, _ = start(chained(2, "backup"))
    fatal = StepError(type="AuthenticationError", message="bad key", provider_failed=True)
    end = finish(state.on_step_failed("a", 1, fatal))
    assert end is not None and end.status == "failed"


def test_a_failure_the_driver_records_names_the_provider_that_ran() -> None:
    state, _ = start(chained(1, "backup"))
    state.on_step_failed("a", 1, UNAVAILABLE)
    state.on_retry_due("a")
    commands = state.on_timeout("a", 2)
    assert [c.provider for c in only(commands, RecordFailure)] == ["backup"]


def test_restore_goes_on_where_the_chain_was() -> None:
    _, commands = RunState.restore(
        chained(0, "backup", "last"),
        "run-1",
        settings(),
        {},
        {"a": 1},
        provider_failures={"a": 1},
        rng=random.Random(1),
    )
    assert dispatches(commands) == [("a", 2)]
    assert providers(commands) == ["backup"]


# --- a run's cost limit ---------------------------------------------------------------


def limited(limit: float) -> WorkflowConfig:
    return workflow(task("a", retries=2), task("b"), task("c")).model_copy(
        update={"max_cost_usd": limit}
    )


def test_a_run_whose_cost_passes_its_limit_stops_before_its_next_step() -> None:
    state, _ = start(limited(0.05))
    assert dispatches(state.on_step_succeeded("a", 1, "A", cost_usd=0.04)) == [("b", 1)]
    commands = state.on_step_succeeded("b", 1, "B", cost_usd=0.02)

    assert dispatches(commands) == []
    end = finish(commands)
    assert end is not None and end.status == "failed"
    assert end.error == (
        "the run's cost passed its limit: $0.0600 spent, max_cost_usd is $0.0500 (after step 'b')"
    )
    assert statuses(state) == {"a": "succeeded", "b": "succeeded", "c": "skipped"}


def test_a_failed_attempts_cost_counts_and_stops_its_retry() -> None:
    state, _ = start(limited(0.05))
    commands = state.on_step_failed("a", 1, RETRYABLE, cost_usd=0.07)

    assert only(commands, ScheduleRetry) == []
    end = finish(commands)
    assert end is not None and end.status == "failed" and "$0.0700 spent" in (end.error or "")


def test_the_last_step_keeps_its_success_whatever_it_cost() -> None:
    state, _ = start(limited(0.05))
    state.on_step_succeeded("a", 1, "A", cost_usd=0.01)
    state.on_step_succeeded("b", 1, "B", cost_usd=0.01)
    end = finish(state.on_step_succeeded("c", 1, "C", cost_usd=1.0))
    assert end is not None and end.status == "succeeded" and state.cost_usd == pytest.approx(1.02)


def test_unknown_costs_count_as_nothing_and_no_limit_means_none() -> None:
    state, _ = start(limited(0.05))
    assert dispatches(state.on_step_succeeded("a", 1, "A")) == [("b", 1)]
    unlimited, _ = start(workflow(task("a"), task("b")))
    assert dispatches(unlimited.on_step_succeeded("a", 1, "A", cost_usd=99.0)) == [("b", 1)]


def test_a_machine_that_keeps_no_outputs_keeps_the_runs_own_and_still_ends_with_it() -> None:
    state, _ = start(workflow(task("a"), task("b"), task("c")), keep_outputs=False)
    state.on_step_succeeded("a", 1, "A" * 10_000)
    state.on_step_succeeded("b", 1, "B")

    assert state.outputs() == {"a": "", "b": ""}  # in the store, not in the coordinator
    assert finish(state.on_step_succeeded("c", 1, "C")) == FinishRun("succeeded", "C", None)
    restored, _ = RunState.restore(
        workflow(task("a"), task("b"), task("c")),
        "run-1",
        settings(),
        committed={s: committed(s, s.upper()) for s in "abc"},
        attempts_seen={},
        keep_outputs=False,
    )
    assert restored.outputs() == {"a": "", "b": "", "c": "C"} and restored.output == "C"
