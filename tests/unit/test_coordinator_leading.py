"""A coordinator that may have lost its lease leaves its timers' work for later."""

from __future__ import annotations

import asyncio
from typing import Any

from agentic.bus.signing import Signer
from agentic.contracts import AgentProvider, RunRecord, RunRequest, TaskConfig, WorkflowConfig
from agentic.materialize import SpecFactory
from agentic.settings import Settings
from agentic.store import open_store
from services.coordinator.effects import Deps
from services.coordinator.runs import RunDriver

WORKFLOW = WorkflowConfig(
    name="w",
    agent_providers=[
        AgentProvider(id="a", type="scripted", role="r", goal="g", backstory="b", script={})
    ],
    tasks=[TaskConfig(id="step", agent_provider_id="a", description="d", expected_output="o")],
    task_sequence=["step"],
)
RUN = RunRecord(
    run_id="r-1", request=RunRequest(workflow_ref="w"), workflow=WORKFLOW, backend="nats"
)


def driver(leading: list[bool], spawned: list[Any]) -> RunDriver:
    deps = Deps(
        settings=Settings(),
        store=open_store("memory://leading-tests"),
        js=None,  # type: ignore[arg-type]  # never reached: the timers stop first
        nc=None,
        timeline=None,  # type: ignore[arg-type]
        stopping=asyncio.Event(),
        ensure_pool=lambda pool: asyncio.sleep(0),
        spawn=spawned.append,
        finished=lambda run_id: None,
        leading=lambda: leading[0],
        signer=Signer.generate(),
    )
    specs = SpecFactory(
        WORKFLOW, run_id="r-1", inputs={}, store_url="memory://leading-tests", settings=Settings()
    )
    return RunDriver(RUN, specs, deps)


async def test_timers_that_fire_while_the_lease_is_in_doubt_fire_again_later() -> None:
    spawned: list[Any] = []
    run = driver([False], spawned)

    await run.on_timeout("step", 1)  # would fail the attempt: the state is never touched
    await run.on_retry_due("step")

    assert set(run._timers) == {"step"} and set(run._retries) == {"step"}
    for handle in (run._timers["step"], run._retries["step"]):
        assert 0.5 < handle.when() - asyncio.get_running_loop().time() <= 1.0
        handle.cancel()
    assert spawned == []
    assert open_store("memory://leading-tests").read_attempts("r-1", "step") == []
