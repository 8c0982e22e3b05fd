"""The coordinator's run drivers without NATS: effects kept in memory, for tests and tools.

As dramatiq ships a stub broker, this ships :class:`MemoryEffects`: what a
:class:`~services.coordinator.runs.RunDriver` would publish (events, steps, kill notices)
lands in a :class:`MemoryBus` instead, and the store is any :class:`~agentic.store.RunStore`
(``memory://`` for tests). Everything else, the state machine, the store reactions and the
timers, is the real code::

    deps, bus = memory_deps(Settings(), open_store("memory://t"))
    driver = RunDriver(record, SpecFactory(...), deps)
    await driver.start({})
    assert bus.steps[0].step_id == "research"
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from agentic import failures
from agentic.contracts import RunRecord, StepError, StepSpec
from agentic.coordinator import CommitFailure, Emit, RecordFailure
from agentic.recording.attempts import commit_failure, record_failure
from agentic.settings import Settings
from services.coordinator.effects import Deps

if TYPE_CHECKING:
    from agentic.store import RunStore

T = TypeVar("T")


@dataclass
class MemoryBus:
    """What the drivers of one coordinator sent, in order, and what the tests make workers say.

    Attributes:
        events: ``(run_id, Emit)`` of every event the coordinator published.
        steps: Every step message queued (the signed payload is not modelled).
        kills: ``(run_id, step_id, attempt)`` of every kill notice.
        finished: Run ids whose driver finished, in order.
        started: Per run, the attempts workers reported started (what a restore reads).
        refuse_pools: Pools whose steps cannot be queued (a publish that fails for good).
        tasks: The tasks timers and handlers spawned.
    """

    events: list[tuple[str, Emit]] = field(default_factory=list)
    steps: list[StepSpec] = field(default_factory=list)
    kills: list[tuple[str, str, int]] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    started: dict[str, dict[str, int]] = field(default_factory=dict)
    refuse_pools: set[str] = field(default_factory=set)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task (what the service's spawner does)."""
        self.tasks.append(asyncio.get_running_loop().create_task(coro))

    def event_types(self, run_id: str) -> list[str]:
        """The types of the events published for ``run_id``, in order."""
        return [emit.type for rid, emit in self.events if rid == run_id]

    def queue(self, spec: StepSpec) -> int:
        """Queue a step message; its stream sequence."""
        self.steps.append(spec)
        return next(self._seq)


class MemoryEffects:
    """:class:`~services.coordinator.effects.DriverEffects` in memory (see the module).

    Args:
        run_id: The run.
        deps: Its settings and store.
        bus: Where published messages go.
    """

    def __init__(self, run_id: str, deps: Deps, bus: MemoryBus) -> None:
        self.run_id = run_id
        self.deps = deps
        self.bus = bus
        self.queued: dict[int, tuple[str, int]] = {}

    async def io(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    async def read(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    async def write_run(self, record: RunRecord, specs: Sequence[StepSpec] = ()) -> None:
        await self.write_specs(specs)
        self.deps.store.write_run(record)

    async def write_specs(self, specs: Sequence[StepSpec]) -> None:
        for spec in specs:
            self.deps.store.write_spec(spec)

    async def publish(self, command: Emit) -> None:
        self.bus.events.append((self.run_id, command))

    async def ready(self, command: Emit, spec: StepSpec) -> StepError | None:
        await self.publish(command)
        return await self.dispatch(spec)

    async def dispatch(self, spec: StepSpec) -> StepError | None:
        if spec.pool in self.bus.refuse_pools:
            return StepError(type=failures.NOT_PUBLISHABLE, message=f"pool {spec.pool} refused")
        self.forget_queued(spec.step_id)
        self.queued[self.bus.queue(spec)] = (spec.step_id, spec.attempt)
        return None

    async def send_kill(self, step_id: str, attempt: int) -> None:
        self.bus.kills.append((self.run_id, step_id, attempt))

    async def record_failure(
        self,
        command: RecordFailure,
        *,
        queued_at: datetime | None = None,
        started_at: datetime | None = None,
    ) -> None:
        record_failure(
            self.deps.store, self.run_id, command, queued_at=queued_at, started_at=started_at
        )

    async def commit_failure(self, command: CommitFailure) -> None:
        commit_failure(self.deps.store, self.run_id, command)

    async def started_attempts(self) -> dict[str, int]:
        return dict(self.bus.started.get(self.run_id, {}))

    def forget_queued(self, step_id: str) -> None:
        for seq, (queued_step, _) in list(self.queued.items()):
            if queued_step == step_id:
                del self.queued[seq]


def memory_deps(
    settings: Settings, store: RunStore, *, leading: Callable[[], bool] = lambda: True
) -> tuple[Deps, MemoryBus]:
    """Deps whose run drivers publish into a new :class:`MemoryBus` (returned with them)."""
    bus = MemoryBus()
    deps = Deps(
        settings=settings,
        store=store,
        stopping=asyncio.Event(),
        spawn=bus.spawn,
        finished=bus.finished.append,
        leading=leading,
        effects=lambda run_id, deps: MemoryEffects(run_id, deps, bus),
    )
    return deps, bus
