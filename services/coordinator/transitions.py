"""Small rules of the coordinator's run drivers.

* :func:`is_current` says whether an attempt is the step's dispatched one;
* :class:`SeededLazily` is the retry jitter of a run, made only when a retry needs it.

(How a transition's commands become a driver's calls is
:mod:`agentic.recording.reactions`, shared by every driver.)
"""

from __future__ import annotations

import random
from typing import cast

from agentic.contracts import StepState


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
