"""Per-step retry and timeout policy, and the retry backoff.

Only retryable errors and timeouts are retried. A step gets ``task.retries`` extra attempts
(``settings.default_retries`` when unset). The delay before the retry that follows failed
attempt ``n`` is ``min(max, base * 2**(n-1))``, scaled by a random factor in
``[1 - jitter, 1 + jitter]`` so that many runs failing together do not retry in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from agentic.contracts import TaskConfig, WorkflowConfig
from agentic.settings import Settings


@dataclass(frozen=True)
class StepPolicy:
    """How often and how long one step may run.

    Attributes:
        retries: Extra attempts after the first, for retryable failures and timeouts.
        timeout_s: Time the driver allows one attempt.
    """

    retries: int
    timeout_s: float

    @property
    def max_attempts(self) -> int:
        """The highest attempt number this step may reach."""
        return 1 + self.retries


@dataclass(frozen=True)
class Backoff:
    """Exponential retry delays with bounded jitter."""

    base_s: float
    max_s: float
    jitter: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Backoff:
        """The backoff of ``retry_backoff_base_s``, ``retry_backoff_max_s``, ``retry_jitter``."""
        return cls(
            base_s=settings.retry_backoff_base_s,
            max_s=settings.retry_backoff_max_s,
            jitter=settings.retry_jitter,
        )

    def delay(self, failed_attempt: int, rng: random.Random) -> float:
        """Seconds to wait before the attempt after ``failed_attempt`` (1-based)."""
        # Cap the exponent: 2**n for a large n is pointless once past max_s.
        raw = self.base_s * 2 ** min(failed_attempt - 1, 62)
        factor = 1.0 + rng.uniform(-self.jitter, self.jitter)
        return max(0.0, min(self.max_s, raw) * factor)


def step_policy(task: TaskConfig, settings: Settings) -> StepPolicy:
    """A task's own retries and timeout, falling back to the settings' defaults."""
    retries = task.retries if task.retries is not None else settings.default_retries
    timeout = task.timeout_s if task.timeout_s is not None else settings.default_step_timeout_s
    return StepPolicy(retries=max(0, retries), timeout_s=timeout)


def step_policies(wf: WorkflowConfig, settings: Settings) -> dict[str, StepPolicy]:
    """The policy of every step in ``task_sequence``."""
    return {step: step_policy(wf.task(step), settings) for step in wf.task_sequence}
