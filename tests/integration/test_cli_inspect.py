"""`agentic runs` and `agentic show` against a real (file) run store seeded with runs."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from agentic.cli import _register, app
from agentic.contracts import (
    RunRecord,
    RunRequest,
    StepError,
    StepResult,
    StepState,
    Timing,
    Usage,
    WorkerInfo,
)
from agentic.store import open_store
from tests.factories import task, workflow

_register()
runner = CliRunner()

NOW = datetime.now(UTC).replace(microsecond=0)
LONG_OUTPUT = "The edited article. " * 60  # 1,200 characters: longer than any preview


def attempt(run_id, step, n, *, at, ok=True, output="", tokens=(0, 0), cost=None, reused=None):
    start = NOW + timedelta(seconds=at)
    return StepResult(
        run_id=run_id,
        step_id=step,
        attempt=n,
        status="succeeded" if ok else "failed",
        output=output,
        error=None
        if ok
        else StepError(type="RateLimited", message="429 slow down", retryable=True),
        usage=Usage(prompt_tokens=tokens[0], completion_tokens=tokens[1], cost_usd=cost),
        timing=Timing(started_at=start, finished_at=start + timedelta(seconds=1.5)),
        worker=WorkerInfo(host="box", pid=4242),
        reused_from=reused,
    )


def seed_run(store, run_id, *, name, status, age_h, steps, backend="inprocess", replay_of=None):
    """A finished run whose steps each succeeded or failed as ``steps`` says."""
    created = NOW - timedelta(hours=age_h)
    record = RunRecord(
        run_id=run_id,
        status=status,
        request=RunRequest(workflow_ref=name),
        workflow=workflow(*(task(s) for s in steps), name=name),
        backend=backend,
        created_at=created,
        updated_at=created + timedelta(seconds=42),
        finished_at=created + timedelta(seconds=42),
        steps=[StepState(step_id=s, status=st, attempt=1) for s, st in steps.items()],
        output=LONG_OUTPUT if status == "succeeded" else None,
        error=None if status == "succeeded" else "step 'write' failed after 1 attempt",
        replay_of=replay_of,
    )
    assert store.create_run(record)
    return record


@pytest.fixture
def store_url(tmp_path, monkeypatch):
    url = str(tmp_path / "store")
    monkeypatch.setenv("AGENTIC_RUN_STORE_URL", url)
    return url


@pytest.fixture
def seeded(store_url):
    """Three runs: an old success, a failure, a recent replay with a retried step."""
    store = open_store(store_url)
    seed_run(store, "run-old", name="demo", status="succeeded", age_h=72,
             steps={"research": "succeeded"})  # fmt: skip
    seed_run(store, "run-failed", name="other", status="failed", age_h=5,
             steps={"research": "succeeded", "write": "failed"}, backend="subprocess")  # fmt: skip
    all_ok = {"research": "succeeded", "write": "succeeded", "edit": "succeeded"}
    seed_run(store, "run-new", name="demo", status="succeeded", age_h=1, replay_of="run-old",
             steps=all_ok)  # fmt: skip
    research = attempt("run-new", "research", 1, at=0, output="notes", tokens=(900, 100),
                       reused="run-old")  # fmt: skip
    failed = attempt("run-new", "write", 1, at=2, ok=False, tokens=(50, 0), cost=0.001)
    written = attempt("run-new", "write", 2, at=5, output="draft", tokens=(300, 200), cost=0.004)
    article = store.write_artifact("run-new", "edit", "article.md", b"# Article\n", "text/markdown")
    edited = attempt("run-new", "edit", 1, at=8, output=LONG_OUTPUT, tokens=(100, 50), cost=0.002)
    edited = edited.model_copy(update={"artifacts": [article]})
    for result in (research, failed, written, edited):
        store.write_attempt(result)
    for result in (research, written, edited):
        store.commit_result(result)
    return store


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_runs_lists_every_run_newest_first_with_its_columns(seeded):
    result = invoke("runs")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for column in ("run id", "workflow", "status", "backend", "created", "duration", "steps ok"):
        assert column in lines[0]
    order = [line.split()[0] for line in lines[1:]]
    assert order == ["run-new", "run-failed", "run-old"]
    failed_row = lines[2].split()
    assert failed_row[1:4] == ["other", "failed", "subprocess"]
    assert "1/2" in lines[2] and "3/3" in lines[1] and "42.0s" in lines[1]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--status", "failed"], ["run-failed"]),
        (["--workflow", "demo"], ["run-new", "run-old"]),
        (["--since", "1d"], ["run-new", "run-failed"]),
        (["--since", (NOW - timedelta(hours=2)).isoformat()], ["run-new"]),
        (["--limit", "1"], ["run-new"]),
        (["--workflow", "demo", "--status", "failed"], []),
    ],
)
def test_runs_filters_by_status_workflow_date_and_count(seeded, args, expected):
    result = invoke("runs", "--json", *args)
    assert result.exit_code == 0, result.output
    assert [run["run_id"] for run in json.loads(result.stdout)] == expected


def test_runs_json_has_the_summary_of_each_run(seeded):
    (failed,) = json.loads(invoke("runs", "--json", "--status", "failed").stdout)
    assert failed["workflow"] == "other" and failed["backend"] == "subprocess"
    assert (failed["steps_succeeded"], failed["steps_total"]) == (1, 2)
    assert failed["elapsed_s"] == 42.0


def test_store_reindex_rebuilds_a_deleted_index_to_the_same_listing(seeded, store_url):
    before = invoke("runs", "--json", "--limit", "0").stdout
    shutil.rmtree(f"{store_url}/index")

    result = invoke("store", "reindex")

    assert result.exit_code == 0, result.output
    assert "indexed 3 runs" in result.stdout
    assert invoke("runs", "--json", "--limit", "0").stdout == before
    assert len(json.loads(before)) == 3


def test_an_empty_store_says_so(store_url):
    result = invoke("runs")
    assert result.exit_code == 0
    assert "no runs" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--status", "done"], "--status 'done'"),
    (["--since", "last tuesday"], "--since 'last tuesday'"),
])  # fmt: skip
def test_a_bad_filter_exits_2_naming_the_option(store_url, args, message):
    result = invoke("runs", *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_show_prints_every_attempt_of_every_step_with_worker_and_error(seeded):
    result = invoke("show", "run-new")
    assert result.exit_code == 0, result.output
    text = result.stdout
    timeline = [line for line in text.splitlines() if "box:4242" in line]
    assert len(timeline) == 4  # research, write (twice), edit
    failed_line = next(line for line in timeline if "failed" in line)
    assert "RateLimited: 429 slow down" in failed_line and "1.50s" in failed_line
    assert "reused from run-old" in text
    assert "replay of" in text and "run-old" in text


def test_show_truncates_outputs_and_points_to_the_full_text(seeded):
    text = invoke("show", "run-new").stdout
    assert "edit (1,200 chars)" in text
    assert LONG_OUTPUT.strip() not in text.replace("\n", "")
    assert "--output STEP" in text


def test_show_reports_tokens_and_cost_per_step_and_in_total_without_reused_steps(seeded):
    text = invoke("show", "run-new").stdout
    # write: 50 + 500 tokens over two attempts, edit: 150; research was reused (free).
    assert "usage: 700 tokens (prompt 450, completion 250), cost $0.0070" in text
    doc = json.loads(invoke("show", "run-new", "--json").stdout)
    per_step = {s["step_id"]: s["usage"] for s in doc["steps"]}
    assert per_step["research"]["total_tokens"] == 0
    assert per_step["write"]["total_tokens"] == 550
    assert per_step["write"]["cost_usd"] == pytest.approx(0.005)
    assert doc["usage"]["total_tokens"] == 700


def test_show_lists_artifacts(seeded):
    assert "edit/article.md" in invoke("show", "run-new").stdout
    doc = json.loads(invoke("show", "run-new", "--json").stdout)
    edit = next(s for s in doc["steps"] if s["step_id"] == "edit")
    assert edit["artifacts"][0]["path"] == "article.md"


def test_show_json_has_full_outputs_and_every_attempt(seeded):
    doc = json.loads(invoke("show", "run-new", "--json").stdout)
    assert doc["run_id"] == "run-new" and doc["status"] == "succeeded"
    assert doc["replay_of"] == "run-old"
    steps = {s["step_id"]: s for s in doc["steps"]}
    assert steps["edit"]["output"] == LONG_OUTPUT
    assert [a["status"] for a in steps["write"]["attempts"]] == ["failed", "succeeded"]
    assert steps["write"]["attempts"][0]["error"]["type"] == "RateLimited"
    assert steps["write"]["attempts"][0]["worker"] == "box:4242"


def test_show_output_prints_one_steps_full_output_and_nothing_else(seeded):
    result = invoke("show", "run-new", "--output", "edit")
    assert result.exit_code == 0
    assert result.stdout == LONG_OUTPUT + "\n"


def test_show_of_a_failed_run_shows_its_error(seeded):
    result = invoke("show", "run-failed")
    assert result.exit_code == 0
    assert "step 'write' failed after 1 attempt" in result.stdout


def planner_section(run_id: str) -> list[str]:
    """The lines after `planner` in `agentic show RUN_ID` (which must exit 0)."""
    result = invoke("show", run_id)
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines()]
    return lines[lines.index("planner") + 1 :]


def test_show_of_a_goal_run_says_what_the_planner_did(store_url):
    store = open_store(store_url)
    record = seed_run(store, "run-goal", name="plan-otters", status="succeeded", age_h=0,
                      steps={"research": "succeeded", "write": "succeeded"})  # fmt: skip
    plan = {
        "mode": "once", "goal": "Explain otters", "planner": "planner", "prompt": "…",
        "replies": [
            {"raw": "{}", "problems": ["steps[1].agent_provider_id: unknown agent 'ghost'"]},
            {"raw": "{}", "problems": []},
        ],
        "plan": {"steps": [{"id": "research", "agent_provider_id": "researcher"},
                           {"id": "write", "agent_provider_id": "writer"}]},
    }  # fmt: skip
    store.write_run(record.model_copy(update={"plan": plan}))
    section = planner_section("run-goal")
    assert section[:5] == [
        "goal      Explain otters",
        "planner   planner",
        "plan, call 1: 1 problem(s): steps[1].agent_provider_id: unknown agent 'ghost'",
        "plan, call 2: accepted",
        "steps: research (researcher), write (writer)",
    ]


def test_show_of_an_iterative_goal_run_lists_its_rounds(store_url):
    store = open_store(store_url)
    record = seed_run(store, "run-rounds", name="plan-otters", status="succeeded", age_h=0,
                      steps={"research": "succeeded"})  # fmt: skip
    plan = {
        "mode": "iterative", "goal": "Explain otters", "planner": "planner",
        "stopped": "done", "rounds": [
            {"round": 1, "replies": [{"raw": "{}", "problems": []}], "step": "research",
             "run_id": "run-rounds-r1", "status": "succeeded",
             "plan": {"steps": [{"id": "research", "agent_provider_id": "researcher"}]}},
            {"round": 2, "replies": [{"raw": "{}", "problems": []}],
             "plan": {"steps": [], "done": True}},
        ],
    }  # fmt: skip
    store.write_run(record.model_copy(update={"plan": plan}))
    section = planner_section("run-rounds")
    assert section[:9] == [
        "goal      Explain otters",
        "planner   planner",
        "stopped   done",
        "round 1, call 1: accepted",
        "steps: research (researcher)",
        "ran research as run run-rounds-r1: succeeded",
        "round 2, call 1: accepted",
        "the planner said the goal is done",
        "prompts and raw replies: --json",
    ]


@pytest.mark.parametrize(("args", "message"), [
    (["show", "run-missing"], "no run 'run-missing'"),
    (["show", "../../etc"], "unsafe run id"),
    (["show", "run-new", "--output", "publish"], "has no step 'publish'; its steps: research"),
])  # fmt: skip
def test_show_of_something_the_store_does_not_hold_exits_2(seeded, args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""
