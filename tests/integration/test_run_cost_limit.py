"""A run's cost limit (``max_cost_usd`` on the workflow, ``--max-cost-usd`` per run) on
every local backend: costs are the scripted provider's counted tokens at its price."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentic.cli import _register, app
from agentic.contracts import Price, TaskConfig, WorkflowConfig
from agentic.store import open_store
from tests.factories import scripted_agent
from tests.integration.test_cancel_local import cli_env
from tests.parity import run_workflow

_register()
runner = CliRunner()

# A dollar per token: every step of a few dozen words costs tens of dollars.
PRICEY = Price(input_per_million=1_000_000, output_per_million=1_000_000)


def three_steps(limit: float | None) -> WorkflowConfig:
    agent = scripted_agent("pricey").model_copy(update={"price": PRICEY})
    tasks = [
        TaskConfig(id=step, agent_provider_id="pricey", description=f"Do {step}.",
                   expected_output="text")
        for step in ("first", "second", "third")
    ]  # fmt: skip
    return WorkflowConfig(
        name="pricey",
        agent_providers=[agent],
        tasks=tasks,
        task_sequence=["first", "second", "third"],
        max_cost_usd=limit,
    )


@pytest.mark.parametrize("backend", ["inprocess", "subprocess"])
def test_a_run_stops_once_its_cost_passes_max_cost_usd(tmp_path: Path, backend: str) -> None:
    url = str(tmp_path / "store")
    free = run_workflow(backend, three_steps(None), {"topic": "money"}, url)
    assert free.record.status == "succeeded"
    store = open_store(url)
    costs = [store.read_result(free.record.run_id, s).usage.cost_usd for s in ("first", "second")]
    assert all(cost is not None and cost > 0 for cost in costs), costs
    # A limit between the first step's cost and the first two: the third never runs.
    limit = costs[0] + costs[1] / 2

    run = run_workflow(backend, three_steps(limit), {"topic": "money"}, url)

    assert run.record.status == "failed"
    spent = costs[0] + costs[1]
    assert run.record.error == (
        f"the run's cost passed its limit: ${spent:.4f} spent, max_cost_usd is "
        f"${limit:.4f} (after step 'second')"
    )
    assert [s.status for s in run.record.steps] == ["succeeded", "succeeded", "skipped"]
    assert store.read_attempts(run.record.run_id, "third") == []


def test_agentic_run_max_cost_usd_overrides_the_workflow_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    (config / "agent_providers").mkdir(parents=True)
    (config / "workflows").mkdir()
    (config / "agent_providers" / "pricey.yaml").write_text(
        "id: pricey\ntype: scripted\nrole: r\ngoal: g\nbackstory: b\n"
        "script: {replies: [an answer of several words]}\n"
        "price: {input_per_million: 1000000, output_per_million: 1000000}\n"
    )
    (config / "workflows" / "two.yaml").write_text(
        "workflow:\n  name: two\n  agent_providers: [pricey]\n  tasks:\n"
        "    - {id: one, agent_provider_id: pricey, description: d, expected_output: e}\n"
        "    - {id: two, agent_provider_id: pricey, description: d, expected_output: e}\n"
    )
    for name, value in {**cli_env(str(tmp_path / "store"), config),
                        "AGENTIC_EXECUTION_BACKEND": "inprocess"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)

    run = runner.invoke(app, ["run", "two", "--run-id", "capped", "--max-cost-usd", "0.5"])

    assert run.exit_code == 1, run.output
    record = open_store(str(tmp_path / "store")).read_run("capped")
    assert record.workflow is not None and record.workflow.max_cost_usd == 0.5
    assert "max_cost_usd is $0.5000 (after step 'one')" in (record.error or "")

    bad = runner.invoke(app, ["run", "two", "--max-cost-usd", "-1"])
    assert bad.exit_code == 2
    assert "max_cost_usd" in bad.output
