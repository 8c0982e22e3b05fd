"""The coordinator core: a pure state machine that advances runs (events in, commands out).

It never performs I/O and never imports CrewAI, NATS, Kubernetes, fsspec or the store: the
drivers (backends, the coordinator service) feed it events and carry out its commands.
"""

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
from agentic.coordinator.policy import Backoff, StepPolicy, step_policies, step_policy
from agentic.coordinator.state import (
    TIMEOUT_ERROR_TYPE,
    CommittedResult,
    RunState,
    StepStatus,
)

__all__ = [
    "TIMEOUT_ERROR_TYPE",
    "Backoff",
    "Command",
    "CommitFailure",
    "CommittedResult",
    "Dispatch",
    "Emit",
    "FinishRun",
    "FinishStatus",
    "RecordFailure",
    "RunState",
    "ScheduleRetry",
    "StepPolicy",
    "StepStatus",
    "Terminate",
    "step_policies",
    "step_policy",
]
