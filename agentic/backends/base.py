"""The backend contract: how runs and steps are executed.

Two protocols, one per level:

* :class:`Backend` runs a whole run: ``run(record, store, settings, on_event)`` returns the
  finished :class:`~agentic.contracts.RunRecord`. Every backend records the run in the store.
* :class:`StepLauncher` is the smaller seam of the backends that start one process or Job
  per step (``subprocess``, ``kubernetes``), after Dagster's step handler: ``launch`` a step,
  ``check`` its health, ``terminate`` it. Results never come back through the launcher: the
  step writes them to the run store, which is the source of truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from agentic import failures
from agentic.contracts import RunRecord, StepError, StepResult, StepSpec
from agentic.recording.journal import EventCallback
from agentic.settings import Settings

if TYPE_CHECKING:
    from agentic.store import RunStore

STDERR_TAIL_CHARS = 2000


HandleT = TypeVar("HandleT")


@dataclass(frozen=True)
class StepHealth:
    """What a launcher knows about one launched step.

    Attributes:
        state: ``running``; ``exited`` (the process or Job ended, successfully or not);
            ``unknown`` (cannot tell right now, e.g. the API server did not answer: check
            again later rather than declare the step dead).
        exit_code: The exit status once ``exited``.
        stderr_tail: The end of the step's stderr once ``exited``.
        detail: Why the state is ``unknown``, for logs.
    """

    state: Literal["running", "exited", "unknown"]
    exit_code: int | None = None
    stderr_tail: str = ""
    detail: str = ""

    @classmethod
    def running(cls) -> StepHealth:
        """The step is still running."""
        return cls("running")

    @classmethod
    def exited(cls, exit_code: int, stderr_tail: str = "") -> StepHealth:
        """The step ended with ``exit_code``; only the last characters of stderr are kept."""
        return cls("exited", exit_code=exit_code, stderr_tail=stderr_tail[-STDERR_TAIL_CHARS:])

    @classmethod
    def unknown(cls, detail: str = "") -> StepHealth:
        """The launcher cannot tell right now."""
        return cls("unknown", detail=detail)

    def crash_error(self) -> StepError:
        """The error of an attempt whose process exited without committing a result.

        A crash is retryable: a killed pod or an out-of-memory worker may well succeed on the
        next attempt.
        """
        message = f"step process exited with code {self.exit_code}"
        if self.stderr_tail.strip():
            message += f"; stderr ends with:\n{self.stderr_tail.rstrip()}"
        return StepError(type=failures.CRASHED, message=message, retryable=True)


class StepLauncher(Protocol[HandleT]):
    """Starts, watches and stops the process (or Job) of one step attempt."""

    def launch(self, spec: StepSpec) -> HandleT:
        """Start ``spec`` (already written to the store) and return a handle to it."""
        ...

    def check(self, handle: HandleT) -> StepHealth:
        """The step's health now; never raises for a step that died."""
        ...

    def terminate(self, handle: HandleT) -> None:
        """Stop the step; a step that is already gone is not an error."""
        ...

    def close(self) -> None:
        """Release what the launcher holds (watches, clients) once its run is over."""
        ...


class Backend(Protocol):
    """Executes runs. Modules ``agentic.backends.<name>`` provide ``create_backend()``."""

    name: str

    def run(
        self,
        record: RunRecord,
        store: RunStore,
        settings: Settings,
        on_event: EventCallback,
        *,
        reused: Mapping[str, StepResult] | None = None,
    ) -> RunRecord:
        """Run ``record`` (already created in ``store``) to its end and return it finished.

        The backend writes step specs, results and the updated ``run.json`` to ``store``
        and calls ``on_event`` for every run event, in order.

        Args:
            reused: Succeeded results of an earlier run (a replay), already committed to
                this run, by step id: those steps are never executed.
        """
        ...
