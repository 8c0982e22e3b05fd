"""What a replay reuses and executes, how `--set` changes the workflow, and how the
``inprocess`` backend's crew is cut down to the remaining tasks. No model is involved."""

from __future__ import annotations

import uuid

import pytest

from agentic.backends.inprocess.reuse import remaining_crew
from agentic.catalog import load_catalog, load_workflow
from agentic.contracts import RunRecord, RunRequest, StepResult, WorkflowConfig
from agentic.errors import CatalogError, ConfigError
from agentic.materialize import PRIOR_OUTPUTS_MARKER, materialize
from agentic.replay import apply_sets, downstream, first_unfinished_step, reusable_results
from agentic.settings import Settings
from agentic.store import open_store
from tests.factories import alias_bomb, make_catalog, task_yaml, workflow_yaml

DIAMOND = workflow_yaml(
    task_yaml("a")
    + task_yaml("b", depends_on="[a]")
    + task_yaml("c", depends_on="[a]")
    + task_yaml("d", depends_on="[b, c]")
    + task_yaml("e")
)


@pytest.fixture
def catalog(tmp_path):
    return load_catalog([make_catalog(tmp_path / "config", {"workflows/flow.yaml": DIAMOND})])


@pytest.fixture
def diamond(catalog) -> WorkflowConfig:
    return load_workflow("flow", catalog)


@pytest.fixture
def store():
    return open_store(f"memory://replay-{uuid.uuid4().hex}")


def committed(store, run_id: str, wf: WorkflowConfig, statuses: dict[str, str]) -> None:
    store.create_run(
        RunRecord(run_id=run_id, request=RunRequest(workflow=wf), workflow=wf, backend="inprocess")
    )
    for step_id, status in statuses.items():
        error = {"type": "Boom", "message": "boom"} if status == "failed" else None
        result = StepResult.model_validate(
            {
                "run_id": run_id,
                "step_id": step_id,
                "attempt": 1,
                "status": status,
                "output": f"out {step_id} {{topic}} {{other}}",
                "error": error,
            }
        )
        store.commit_result(result)


def test_downstream_follows_dependencies_transitively(diamond):
    assert downstream(diamond, "b") == {"b", "d"}
    assert downstream(diamond, "a") == {"a", "b", "c", "d"}


def test_a_parallel_branch_is_reused_and_only_downstream_steps_execute(store, diamond):
    committed(store, "old", diamond, dict.fromkeys("abcde", "succeeded"))

    reused = reusable_results(store, "old", diamond, "b")

    assert list(reused) == ["a", "c", "e"]  # c is neither upstream nor downstream of b


def test_a_step_that_did_not_succeed_is_executed_even_when_not_downstream(store, diamond):
    committed(store, "old", diamond, {"a": "succeeded", "b": "succeeded", "c": "failed"})

    assert list(reusable_results(store, "old", diamond, "d")) == ["a", "b"]
    record = store.read_run("old")
    assert first_unfinished_step(store, record) == "c"


def test_resuming_a_run_where_every_step_succeeded_asks_for_from(store, diamond):
    committed(store, "old", diamond, dict.fromkeys("abcde", "succeeded"))

    with pytest.raises(ConfigError, match="give --from STEP"):
        first_unfinished_step(store, store.read_run("old"))


def test_set_values_become_the_type_the_field_needs(diamond, catalog):
    wf, inputs = apply_sets(
        diamond,
        {"topic": "old"},
        [
            "tasks.b.retries=0",
            "tasks.b.mcp_providers=[tools]",
            "tasks.e.description=yes",  # text stays text, not YAML's true
            "topic=new topic",
            "inputs.audience=engineers",
            "agent_providers.alpha.script.delay_s=0.5",
        ],
        catalog,
    )

    assert wf.task("b").retries == 0
    assert wf.task("b").mcp_providers == ["tools"]
    assert wf.task("e").description == "yes"
    assert inputs == {"topic": "new topic", "audience": "engineers"}
    assert wf.provider("alpha").script is not None and wf.provider("alpha").script.delay_s == 0.5


def test_a_task_may_switch_to_a_catalog_agent_the_workflow_did_not_embed(tmp_path, catalog):
    only_alpha = WorkflowConfig.model_validate(
        {
            **load_workflow("flow", catalog).model_dump(),
            "agent_providers": [catalog.agent_providers["alpha"].model_dump()],
        }
    )
    wf, _ = apply_sets(only_alpha, {}, ["tasks.b.agent_provider_id=beta"], catalog)

    assert wf.task("b").agent_provider_id == "beta"
    assert wf.provider("beta") == catalog.agent_providers["beta"]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("tasks.zz.retries=1", "no entry 'zz' in tasks (known: a, b, c, d, e)"),
        ("tasks.b.colour=red", "no field 'tasks.b.colour'"),
        ("tasks.b.id=x", "ids cannot be changed"),
        ("tasks.b.retries=-1", "retries"),
        ("noequals", "expected PATH=VALUE"),
        ("inputs.bad name=x", "inputs.NAME"),
    ],
)
def test_a_bad_set_item_is_named_in_the_error(diamond, catalog, item, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as got:
        apply_sets(diamond, {}, [item], catalog)
    assert repr(item) in str(got.value) or item.split("=")[0] in str(got.value)


def test_a_set_value_that_is_an_alias_bomb_is_refused_before_it_expands(diamond, catalog):
    item = f"tasks.b.retries={alias_bomb(flow=True)}"

    with pytest.raises(ConfigError, match=r"YAML expands to more than \d+ nodes once its aliases"):
        apply_sets(diamond, {}, [item], catalog)


def test_a_set_that_breaks_the_graph_is_refused(diamond, catalog):
    with pytest.raises(CatalogError, match="--set"):
        apply_sets(diamond, {}, ["tasks.a.depends_on=[d]"], catalog)


def test_an_unknown_agent_for_a_task_is_refused(diamond, catalog):
    with pytest.raises(CatalogError, match="nobody"):
        apply_sets(diamond, {}, ["tasks.a.agent_provider_id=nobody"], catalog)


def test_the_inprocess_crew_keeps_the_remaining_tasks_with_reused_outputs_written_in(
    diamond, store
):
    committed(store, "old", diamond, {"a": "succeeded", "c": "succeeded"})
    reused = {s: store.read_result("old", s).output for s in ("a", "c")}
    specs = materialize(
        diamond, run_id="new", inputs={"topic": "t"}, store_url=store.url, settings=Settings()
    )

    crew, literal = remaining_crew(diamond, {s.step_id: s for s in specs}, reused, max_chars=1000)

    assert crew.task_sequence == ["b", "d", "e"]
    assert crew.task("b").depends_on == []  # its only dependency was reused: now a root
    assert crew.task("d").depends_on == ["b"]
    b_text = crew.task("b").description
    assert PRIOR_OUTPUTS_MARKER in b_text and "out a {topic}" in b_text
    assert "out c" in crew.task("d").description and "out a" not in crew.task("d").description
    assert PRIOR_OUTPUTS_MARKER not in crew.task("e").description
    # Braces in an output are text: passed through unchanged (the run's inputs keep theirs).
    assert literal == {"other": "{other}"}


def test_without_reused_results_the_crew_is_the_workflow(diamond):
    assert remaining_crew(diamond, {}, {}, max_chars=10) == (diamond, {})
