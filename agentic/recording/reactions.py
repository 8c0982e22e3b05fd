"""How a driver carries out one transition of the state machine: the one place that maps
commands to the driver's calls.

Every driver (the local step-per-process loop, the in-process crew, the coordinator
service) is a :class:`Transport`: it knows how to emit an event, queue a step, stop one,
wait out a retry and end the run on its own medium (a callback, a launcher, NATS).
:func:`reactions` turns a transition's commands into the calls to make, in order, with
the rules every driver follows:

* a ``step_ready`` and the :class:`~agentic.coordinator.Dispatch` it announces go out
  together (:meth:`Transport.ready`), so a driver can send both back to back;
* the run's end (:meth:`Transport.finish`: the final ``run.json``) comes before the
  terminal event, so whoever hears of the end reads a finished run;
* the rest keeps the machine's order.

A synchronous driver calls each ``call()``; an asynchronous one awaits it: the mapping is
the same. Adding a command means a method here and in each transport, which the type
checker then asks for; the store's side of :class:`~agentic.coordinator.RecordFailure` and
:class:`~agentic.coordinator.CommitFailure` is written once, in
:mod:`agentic.recording.attempts`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from agentic.contracts import TERMINAL_EVENTS
from agentic.coordinator import (
    Command,
    CommitFailure,
    Dispatch,
    Emit,
    FinishRun,
    RecordFailure,
    ScheduleRetry,
    Terminate,
)

R = TypeVar("R", covariant=True)


class Transport(Protocol[R]):
    """A driver's side of the commands; ``R`` is ``None`` or an awaitable of it."""

    def record_failure(self, command: RecordFailure) -> R:
        """Write the failed attempt (:func:`agentic.recording.attempts.record_failure`)."""
        ...

    def commit_failure(self, command: CommitFailure) -> R:
        """Commit the step's last failure (:func:`agentic.recording.attempts.commit_failure`)."""
        ...

    def ready(self, announce: Emit, command: Dispatch) -> R:
        """Emit ``step_ready`` and queue the attempt it announces."""
        ...

    def emit(self, command: Emit) -> R:
        """Record or publish one run event."""
        ...

    def dispatch(self, command: Dispatch) -> R:
        """Queue an attempt (one no ``step_ready`` announced)."""
        ...

    def terminate(self, command: Terminate) -> R:
        """Stop an attempt."""
        ...

    def schedule_retry(self, command: ScheduleRetry) -> R:
        """Call back ``on_retry_due`` after the delay."""
        ...

    def finish(self, command: FinishRun) -> R:
        """Write the run's end (``run.json`` final)."""
        ...


def reactions(commands: Sequence[Command], transport: Transport[R]) -> list[Callable[[], R]]:
    """The calls that carry out one transition's ``commands`` on ``transport``, in order."""
    calls: list[Callable[[], R]] = []
    finish = next((c for c in commands if isinstance(c, FinishRun)), None)
    i = 0
    while i < len(commands):
        command = commands[i]
        following = commands[i + 1] if i + 1 < len(commands) else None
        if _announces(command, following):
            assert isinstance(command, Emit) and isinstance(following, Dispatch)
            calls.append(_bind(transport.ready, command, following))
            i += 2
            continue
        if isinstance(command, Emit) and command.type in TERMINAL_EVENTS and finish:
            calls.append(_bind(transport.finish, finish))  # run.json final first
            finish = None
        if not isinstance(command, FinishRun) or finish is not None:
            calls.append(_call(transport, command))
        i += 1
    return calls


def _announces(command: Command, following: Command | None) -> bool:
    return (
        isinstance(command, Emit)
        and command.type == "step_ready"
        and isinstance(following, Dispatch)
        and (following.step_id, following.attempt) == (command.step_id, command.attempt)
    )


def _call(transport: Transport[R], command: Command) -> Callable[[], R]:
    """The one call that carries out ``command`` (every command type appears here once)."""
    match command:
        case RecordFailure():
            return _bind(transport.record_failure, command)
        case CommitFailure():
            return _bind(transport.commit_failure, command)
        case Emit():
            return _bind(transport.emit, command)
        case Dispatch():
            return _bind(transport.dispatch, command)
        case Terminate():
            return _bind(transport.terminate, command)
        case ScheduleRetry():
            return _bind(transport.schedule_retry, command)
        case FinishRun():
            return _bind(transport.finish, command)
    raise TypeError(f"not a command: {command!r}")


def _bind(method: Callable[..., R], *args: object) -> Callable[[], R]:
    def call() -> R:
        return method(*args)

    return call
