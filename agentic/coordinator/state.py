"""The coordinator's pure state machine: events in, commands out.

:class:`RunState` holds one run. Each ``on_*`` method takes one event and returns the
:mod:`~agentic.coordinator.commands` the driver must carry out. The machine does no I/O,
never reads a clock (the driver owns time: it reports timeouts and due retries) and draws
jitter only from an injected ``random.Random`` (seeded from the run id by default).

Rules:

* **Readiness.** A step is dispatched once every step it depends on has succeeded (see
  :mod:`agentic.graph`); all steps that become ready together are dispatched in
  the same transition, so independent steps run in parallel.
* **Retries.** A retryable failure or a timeout of attempt ``n`` schedules attempt ``n + 1``
  after a backoff, while the step's policy allows it (:mod:`~agentic.coordinator.policy`).
* **Fallback.** A failure of the model provider itself (``StepError.provider_failed``: a
  429, a 5xx, a request timeout or a refused connection past the provider's own retries)
  moves the step to the next provider of its chain (:meth:`WorkflowConfig.provider_chain`),
  at once and without using up one of the step's ``retries``: every provider of the chain
  gets its turn. Past the chain's end, the last provider keeps the step's retries.
* **Records.** A failure the step could not record itself (``on_timeout``, or
  ``on_step_failed(..., observed=True)``) is recorded by command (:class:`RecordFailure`)
  before the event that reports it; the last failure of a step that will not be retried is
  committed by command (:class:`CommitFailure`) before the run finishes.
* **Fail fast.** A fatal error or exhausted retries fails the run at once: dispatched siblings
  get :class:`Terminate` and become ``cancelled`` (no tokens are spent on a run that already
  failed), steps that never started become ``skipped``. Whatever a terminated attempt managed
  to commit stays in the store, where a replay can reuse it.
* **Idempotence.** NATS delivers at least once, so events for another attempt than the step's
  current one, for a step already finished, or for a finished run are ignored (the method
  returns no commands). No step is dispatched twice with the same attempt number.
* **Output.** A succeeded run's output is the output of its last sink in ``task_sequence``.
* **Review.** A workflow with a post-run review (:mod:`agentic.review`) has a last step
  whose output is the reviewer's JSON: its score and reasons go to ``run.json`` ``review``
  when the run ends, and a score below ``min_score`` (or no score) fails the run with the
  reasons. The run's output stays the reviewed step's.
* **Cost.** The machine adds up the ``cost_usd`` of every attempt it hears the end of
  (restored runs: of every committed result). Once the sum passes the workflow's
  ``max_cost_usd`` while steps are left, the run fails as a fatal error does, naming the
  sum and the limit; a run whose last step has just succeeded keeps its success.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from agentic import failures, graph
from agentic.contracts import (
    Review,
    RunStatus,
    StepError,
    StepState,
    WorkflowConfig,
    stopped_status,
)
from agentic.contracts.events import (
    StepFailedData,
    StepReadyData,
    StepRetryingData,
    StepSucceededData,
    end_payload,
)
from agentic.coordinator.commands import (
    Command,
    CommitFailure,
    Dispatch,
    Emit,
    FinishRun,
    FinishStatus,
    RecordFailure,
    ScheduleRetry,
    Terminate,
)
from agentic.coordinator.policy import Backoff, step_policies
from agentic.errors import ConfigError
from agentic.review import read_review
from agentic.settings import Settings

StepStatus = Literal[
    "pending", "ready", "running", "retrying", "succeeded", "failed", "cancelled", "skipped"
]
DISPATCHED: tuple[StepStatus, ...] = ("ready", "running")
TIMEOUT_ERROR_TYPE = failures.TIMEOUT  # kept for importers of agentic.coordinator


class CommittedResult(Protocol):
    """What the machine reads from a committed result (a ``StepResult`` fits)."""

    @property
    def status(self) -> str: ...
    @property
    def attempt(self) -> int: ...
    @property
    def output(self) -> str: ...
    @property
    def error(self) -> StepError | None: ...


@dataclass
class _Step:
    step_id: str
    status: StepStatus = "pending"
    attempt: int = 0  # the attempt last dispatched (or recorded, after a restore)
    output: str | None = None
    error: StepError | None = None
    fallbacks: int = 0  # position in the provider chain: provider failures moved past


class RunState:
    """One run's progress. Build it with :meth:`start` or :meth:`restore`."""

    def __init__(
        self,
        wf: WorkflowConfig,
        run_id: str,
        settings: Settings,
        *,
        rng: random.Random | None = None,
        keep_outputs: bool = True,
    ) -> None:
        self.workflow = wf
        self.run_id = run_id
        self._deps = graph.dependencies(wf)
        self._context = {step: tuple(seen) for step, seen in graph.context(wf).items()}
        self._final_step = graph.final_step(wf)
        self._policies = step_policies(wf, settings)
        self._chains = {step: wf.provider_chain(step) for step in wf.task_sequence}
        self._backoff = Backoff.from_settings(settings)
        # A string seed is hashed deterministically, so replays of a run jitter alike.
        self._rng = rng if rng is not None else random.Random(run_id)
        self._steps = {step: _Step(step) for step in wf.task_sequence}
        # Readiness kept up to date as steps succeed, so that an event costs the same in a
        # run of 800 steps as in one of 5: how many dependencies each step still waits for,
        # and how many steps succeeded.
        self._dependents = graph.dependents(self._deps)
        self._waiting = {step: len(deps) for step, deps in self._deps.items()}
        self._succeeded = 0
        # A driver that never asks for outputs() keeps only those the machine reads (the
        # run's output and the review's verdict): a long run's outputs stay in the store.
        review_step = wf.review.step if wf.review is not None else None
        self._kept = None if keep_outputs else {self._final_step, review_step}
        self.status: RunStatus = "running"
        self.output: str | None = None
        self.error: str | None = None
        self.cost_usd = 0.0
        self.review: dict[str, Any] | None = None
        """The review's verdict once its step succeeded (``run.json`` ``review``)."""
        """What the attempts the machine heard the end of cost, in US dollars (known parts)."""

    # --- construction ------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        wf: WorkflowConfig,
        run_id: str,
        settings: Settings,
        *,
        rng: random.Random | None = None,
        reused: Mapping[str, CommittedResult] | None = None,
        keep_outputs: bool = True,
    ) -> tuple[RunState, list[Command]]:
        """Start a run: dispatch its first steps.

        Args:
            wf: The resolved workflow.
            run_id: The run's id.
            settings: Retry, backoff and timeout defaults.
            rng: Source of retry jitter.
            reused: Succeeded results a replay takes over from an earlier run, by step id;
                those steps count as succeeded (a ``step_succeeded`` event marked
                ``reused`` is emitted for each) and are never dispatched.
            keep_outputs: False: keep only the outputs the machine itself reads (the
                run's output, the review's), never :meth:`outputs`.

        Raises:
            ConfigError: a reused result did not succeed or names no step of ``wf``.
        """
        state = cls(wf, run_id, settings, rng=rng, keep_outputs=keep_outputs)
        commands: list[Command] = []
        for step_id, result in (reused or {}).items():
            step = state._steps.get(step_id)
            if step is None or result.status != "succeeded":
                raise ConfigError(
                    f"cannot reuse step {step_id!r}: only succeeded results of steps in "
                    f"workflow {wf.name!r} can be reused"
                )
            step.attempt, step.output = result.attempt, result.output
            state._succeed(step)
            data = StepSucceededData(reused=True).as_data()
            commands.append(Emit("step_succeeded", step_id, result.attempt, data))
        review = wf.review
        if review is not None and review.step is not None and review.step in (reused or {}):
            # A reused verdict counts as it did: a replay keeps (or fails on) it.
            failed = state._judge(review, state._steps[review.step].output or "")
            if failed is not None:
                end = state._finish("failed", error=failed, step_id=review.step)
                return state, commands + state._stop_all() + end
        return state, commands + state._advance()

    @classmethod
    def restore(
        cls,
        wf: WorkflowConfig,
        run_id: str,
        settings: Settings,
        committed: Mapping[str, CommittedResult],
        attempts_seen: Mapping[str, int],
        *,
        provider_failures: Mapping[str, int] | None = None,
        rng: random.Random | None = None,
        keep_outputs: bool = True,
    ) -> tuple[RunState, list[Command]]:
        """Rebuild a run from the store after a coordinator restart, and continue it.

        Args:
            wf: The run's workflow (from ``run.json``).
            run_id: The run's id.
            settings: Retry, backoff and timeout defaults.
            committed: Each step's committed result. A committed failure is final.
            attempts_seen: For steps without a committed result, the highest attempt number
                that already ended (its attempt file exists). The next dispatch uses the
                number after it; a step whose attempts are used up fails the run.
            provider_failures: For the same steps, how many ended attempts failed with a
                provider failure: where in its provider chain the step continues.
            rng: Source of retry jitter.
            keep_outputs: As :meth:`start`.

        Returns:
            The state, and the commands that continue the run: dispatches of the ready steps
            that have no committed result, or the run's end when nothing is left to do.
        """
        state = cls(wf, run_id, settings, rng=rng, keep_outputs=keep_outputs)
        for step_id, result in committed.items():
            if step_id in state._steps:
                restored = _restored(step_id, result)
                state._steps[step_id] = restored
                if restored.status == "succeeded":
                    restored.status = "pending"
                    state._succeed(restored)
                state.cost_usd += _cost_of(result)
        for step_id, seen in attempts_seen.items():
            step = state._steps.get(step_id)
            if step is not None and step.status == "pending":
                moved = (provider_failures or {}).get(step_id, 0)
                step.fallbacks = min(moved, len(state._chains[step_id]) - 1)
                state._restore_attempts(step, seen)
        failed = next((s for s in state._steps.values() if s.status == "failed"), None)
        if failed is not None:
            return state, state._fail_run(failed, _error_of(failed))
        return state, state._advance()

    # --- reading ----------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once the run succeeded, failed or was cancelled."""
        return self.status != "running"

    def snapshot(self) -> list[StepState]:
        """Every step's status and attempt, in ``task_sequence`` order, for ``run.json``."""
        return [
            StepState(step_id=s.step_id, status=s.status, attempt=s.attempt)
            for s in self._steps.values()
        ]

    def step_state(self, step_id: str) -> StepState | None:
        """One step's status and attempt (None for a step the run does not have)."""
        step = self._steps.get(step_id)
        if step is None:
            return None
        return StepState(step_id=step.step_id, status=step.status, attempt=step.attempt)

    def outputs(self) -> dict[str, str]:
        """Outputs of the steps that succeeded so far."""
        return {s.step_id: s.output or "" for s in self._steps.values() if s.status == "succeeded"}

    # --- events -----------------------------------------------------------------------

    def on_step_started(self, step_id: str, attempt: int) -> list[Command]:
        """A worker began ``attempt`` of ``step_id``."""
        step = self._current(step_id, attempt, ("ready",))
        if step is None:
            return []
        step.status = "running"
        return [Emit("step_started", step_id, attempt, from_worker=True)]

    def on_step_succeeded(
        self, step_id: str, attempt: int, output: str, *, cost_usd: float | None = None
    ) -> list[Command]:
        """``attempt`` of ``step_id`` succeeded with ``output`` (the committed output).

        ``attempt`` is the attempt the event is about. A success of the current attempt is
        accepted even after that attempt was reported failed or timed out (the step then
        waits for its retry): the store's committed result is the truth. ``cost_usd``: what
        the attempt cost, when known.
        """
        step = self._current(step_id, attempt, (*DISPATCHED, "retrying"))
        if step is None:
            return []
        step.output, step.error = output, None
        became_ready = self._succeed(step)
        data = StepSucceededData(output_chars=len(output)).as_data()
        emit = Emit("step_succeeded", step_id, attempt, data, from_worker=True)
        self.cost_usd += cost_usd or 0.0
        review = self.workflow.review
        if review is not None and review.step == step_id:
            failed = self._judge(review, output)
            if failed is not None:
                return [
                    emit,
                    *self._stop_all(),
                    *self._finish("failed", error=failed, step_id=step_id),
                ]
        if not self._all_succeeded and self._over_budget():
            return [emit, *self._stop_for_cost(step)]
        return [emit, *self._advance(became_ready)]

    def on_step_failed(
        self,
        step_id: str,
        attempt: int,
        error: StepError,
        *,
        observed: bool = False,
        cost_usd: float | None = None,
    ) -> list[Command]:
        """``attempt`` of ``step_id`` failed; ``error.retryable`` decides whether to retry.

        Args:
            observed: The driver saw the failure (a crash, a launch or publish that failed,
                deliveries exhausted, a refusal) and the step recorded nothing: the machine
                then commands the attempt's record, and its ``step_failed`` is the driver's
                to report. Otherwise the step recorded and reported its own failure.
            cost_usd: What the attempt cost, when known (a failed attempt's tokens were
                spent too).
        """
        step = self._current(step_id, attempt, DISPATCHED)
        if step is None:
            return []
        self.cost_usd += cost_usd or 0.0
        return self._after_failure(step, error, observed=observed)

    def on_timeout(self, step_id: str, attempt: int) -> list[Command]:
        """``attempt`` of ``step_id`` ran past its timeout: terminate it and maybe retry."""
        step = self._current(step_id, attempt, DISPATCHED)
        if step is None:
            return []
        timeout = self._policies[step_id].timeout_s
        error = StepError(
            type=failures.TIMEOUT,
            message=f"attempt {attempt} exceeded its timeout of {timeout:g} s",
            retryable=True,
        )
        return [Terminate(step_id, attempt), *self._after_failure(step, error, observed=True)]

    def on_retry_due(self, step_id: str) -> list[Command]:
        """The delay of a :class:`ScheduleRetry` for ``step_id`` has passed."""
        step = self._steps.get(step_id)
        if self.finished or step is None or step.status != "retrying":
            return []
        return self._dispatch(step)

    def on_cancel(self, reason: str = "cancelled by request") -> list[Command]:
        """Cancel the run: terminate every dispatched step and finish as ``cancelled``."""
        if self.finished:
            return []
        commands = self._stop_all()
        return commands + self._finish("cancelled", error=reason)

    # --- transitions ------------------------------------------------------------------

    def _current(
        self, step_id: str, attempt: int, statuses: tuple[StepStatus, ...]
    ) -> _Step | None:
        """The step if the event is about its current attempt in one of ``statuses``."""
        step = self._steps.get(step_id)
        if self.finished or step is None:
            return None
        if step.attempt != attempt or step.status not in statuses:
            return None
        return step

    def _advance(self, candidates: list[str] | None = None) -> list[Command]:
        """Dispatch the pending steps among ``candidates`` (default: every step) whose
        dependencies all succeeded, in ``task_sequence`` order; finish when all succeeded."""
        if self.finished:
            return []
        commands: list[Command] = []
        for step_id in self._steps if candidates is None else candidates:
            step = self._steps[step_id]
            if step.status == "pending" and self._waiting[step_id] == 0:
                commands += self._dispatch(step)
        if self._all_succeeded:
            output = self._steps[self._final_step].output or ""
            commands += self._finish("succeeded", output=output)
        return commands

    def _succeed(self, step: _Step) -> list[str]:
        """Mark ``step`` succeeded; returns the steps it was the last dependency of."""
        if step.status == "succeeded":
            return []
        step.status = "succeeded"
        if self._kept is not None and step.step_id not in self._kept:
            step.output = None
        self._succeeded += 1
        ready = []
        for waiter in self._dependents[step.step_id]:
            self._waiting[waiter] -= 1
            if self._waiting[waiter] == 0:
                ready.append(waiter)
        return ready

    @property
    def _all_succeeded(self) -> bool:
        return self._succeeded == len(self._steps)

    def provider_of(self, step_id: str) -> str:
        """The agent provider the step's current (or next) attempt runs on."""
        step = self._steps[step_id]
        return self._chains[step_id][step.fallbacks]

    def _dispatch(self, step: _Step) -> list[Command]:
        step.attempt += 1
        step.status = "ready"
        prior = self._context[step.step_id]
        timeout = self._policies[step.step_id].timeout_s
        ready = StepReadyData(prior_steps=list(prior))
        provider = None  # the task's own: the spec's as materialized
        if step.fallbacks:
            provider = self.provider_of(step.step_id)
            ready = StepReadyData(prior_steps=list(prior), provider=provider, fallback=True)
        return [
            Emit("step_ready", step.step_id, step.attempt, ready.as_data()),
            Dispatch(step.step_id, step.attempt, prior, timeout, provider),
        ]

    def _after_failure(self, step: _Step, error: StepError, *, observed: bool) -> list[Command]:
        step.error = error
        ran_on = self.provider_of(step.step_id)
        fall_back = (
            error.retryable
            and error.provider_failed
            and step.fallbacks + 1 < len(self._chains[step.step_id])
        )
        # Moving down the chain used no retry: each move adds an attempt.
        allowed = self._policies[step.step_id].max_attempts + step.fallbacks
        retry = fall_back or (error.retryable and step.attempt < allowed)
        retry = retry and not self._over_budget()
        data = StepFailedData(error=error, will_retry=retry).as_data()
        failed = Emit("step_failed", step.step_id, step.attempt, data, from_worker=not observed)
        commands: list[Command] = [failed]
        if observed:  # the step recorded nothing: its attempt is written first
            commands.insert(0, RecordFailure(step.step_id, step.attempt, error, ran_on))
        if not retry:
            step.status = "failed"
            commit = CommitFailure(step.step_id, step.attempt)
            if self._over_budget():
                return [*commands, commit, *self._stop_for_cost(step)]
            return [*commands, commit, *self._fail_run(step, error)]
        step.status = "retrying"
        delay = self._backoff.delay(step.attempt, self._rng)
        if fall_back:  # another server: nothing to wait for
            step.fallbacks += 1
            delay = 0.0
        next_attempt = step.attempt + 1
        wait = StepRetryingData(delay_s=delay).as_data()
        retrying = Emit("step_retrying", step.step_id, next_attempt, wait)
        return [*commands, retrying, ScheduleRetry(step.step_id, next_attempt, delay)]

    def _judge(self, review: Review, output: str) -> str | None:
        """Record the reviewer's verdict; why the run fails, or None when it passed."""
        score, reasons = read_review(output)
        passed = score is not None and (review.min_score is None or score >= review.min_score)
        self.review = {
            "provider": review.provider,
            "score": score,
            "min_score": review.min_score,
            "reasons": reasons,
            "passed": passed,
        }
        if passed or (score is None and review.min_score is None):
            return None
        why = "; ".join(reasons) or "no reasons given"
        if score is None:
            return f"the review of step {review.of!r} gave no score: {why}"
        return (
            f"the review scored step {review.of!r} {score:g}/10, below min_score "
            f"{review.min_score:g}: {why}"
        )

    def _over_budget(self) -> bool:
        limit = self.workflow.max_cost_usd
        return limit is not None and self.cost_usd > limit

    def _stop_for_cost(self, step: _Step) -> list[Command]:
        limit = self.workflow.max_cost_usd
        message = (
            f"the run's cost passed its limit: ${self.cost_usd:.4f} spent, max_cost_usd is "
            f"${limit:.4f} (after step {step.step_id!r})"
        )
        return self._stop_all() + self._finish("failed", error=message, step_id=step.step_id)

    def _fail_run(self, step: _Step, error: StepError) -> list[Command]:
        reason = "retries exhausted" if error.retryable else "error not retryable"
        plural = "" if step.attempt == 1 else "s"
        message = (
            f"step {step.step_id!r} failed after {step.attempt} attempt{plural} ({reason}); "
            f"last error: {error.type}: {error.message}"
        )
        return self._stop_all() + self._finish("failed", error=message, step_id=step.step_id)

    def _stop_all(self) -> list[Command]:
        """Terminate dispatched steps; mark unfinished steps cancelled or skipped."""
        commands: list[Command] = []
        for step in self._steps.values():
            if step.status in DISPATCHED:
                commands.append(Terminate(step.step_id, step.attempt))
            step.status = stopped_status(step.status)
        return commands

    def _finish(
        self,
        status: FinishStatus,
        *,
        output: str | None = None,
        error: str | None = None,
        step_id: str | None = None,
    ) -> list[Command]:
        self.status, self.output, self.error = status, output, error
        data = end_payload(status, output=output, error=error).as_data()
        return [Emit(status, step_id, None, data), FinishRun(status, output, error, self.review)]

    def _restore_attempts(self, step: _Step, seen: int) -> None:
        step.attempt = max(step.attempt, seen)
        if step.attempt >= self._policies[step.step_id].max_attempts + step.fallbacks:
            step.status = "failed"
            step.error = StepError(
                type=failures.ATTEMPTS_EXHAUSTED,
                message=f"{step.attempt} attempts had ended before the coordinator restarted",
                retryable=True,
            )


def _restored(step_id: str, result: CommittedResult) -> _Step:
    if result.status == "succeeded":
        return _Step(step_id, "succeeded", result.attempt, result.output)
    return _Step(step_id, "failed", result.attempt, error=result.error)


def _cost_of(result: CommittedResult) -> float:
    usage = getattr(result, "usage", None)
    return float(getattr(usage, "cost_usd", None) or 0.0)


def _error_of(step: _Step) -> StepError:
    return step.error or StepError(type=failures.UNRECORDED, message="no error recorded")
