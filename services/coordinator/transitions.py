"""Small rules about a transition's commands, shared by the run drivers.

* :func:`announced` pairs each ``step_ready`` with the ``Dispatch`` it announces, so that
  the driver sends the event and the step together (:meth:`RunEffects.ready`);
* :func:`published_here` turns a worker's event into one the coordinator publishes (a
  failure no worker could report);
* :class:`SeededLazily` is the retry jitter of a run, made only when a retry needs it.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from typing import cast

from agentic.contracts import StepState
from agentic.coordinator import Command, Dispatch, Emit


def announced(commands: list[Command]) -> Iterator[tuple[Command, Dispatch | None]]:
    """The commands in order, each ``step_ready`` paired with the dispatch it announces."""
    i = 0
    while i < len(commands):
        command = commands[i]
        following = commands[i + 1] if i + 1 < len(commands) else None
        if (
            isinstance(command, Emit)
            and command.type == "step_ready"
            and isinstance(following, Dispatch)
            and (following.step_id, following.attempt) == (command.step_id, command.attempt)
        ):
            yield command, following
            i += 2
        else:
            yield command, None
            i += 1


def published_here(command: Command) -> Command:
    """``command``, with a worker's event turned into one the coordinator publishes."""
    if isinstance(command, Emit) and command.from_worker:
        return dataclasses.replace(command, from_worker=False)
    return command


def is_current(step: StepState, attempt: int) -> bool:
    """Whether ``attempt`` is the step's dispatched attempt."""
    return step.attempt == attempt and step.status in ("ready", "running")


class SeededLazily:
    """``random.Random(seed)``, created at its first use.

    A ``Random`` holds 2.5 KB of state and most runs never retry: with a thousand runs
    waiting, that is 2.5 MB of the coordinator's memory for nothing. Seeded as
    :class:`~agentic.coordinator.RunState` seeds its own, so the jitter is the same.
    """

    __slots__ = ("_rng", "_seed")

    def __init__(self, seed: str) -> None:
        self._seed = seed
        self._rng: random.Random | None = None

    def uniform(self, a: float, b: float) -> float:
        """:meth:`random.Random.uniform` (all that retry backoff draws)."""
        if self._rng is None:
            self._rng = random.Random(self._seed)
        return self._rng.uniform(a, b)

    def as_random(self) -> random.Random:
        """This object where a ``random.Random`` is expected (it draws only ``uniform``)."""
        return cast(random.Random, self)
