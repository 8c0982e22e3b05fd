"""The web console's pages, guard and actions, through Starlette's test client on a real
file store (the browser tests in tests/e2e drive the same app in Chromium)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from agentic.console import actions
from agentic.console.app import create_app
from agentic.console.guard import check_bind, is_loopback
from agentic.console.launch import Launch, Launcher, replay_args, run_args
from agentic.console.layout import depths, graph_layout, timeline
from agentic.console.listing import QueryError, RunsQuery
from agentic.console.live import advance, follow_open_runs, follow_store, initial_view
from agentic.contracts import RunEvent, StepState, Timing, Usage
from agentic.errors import ConfigError
from agentic.settings import Settings
from agentic.store import RunStore, open_store
from tests.factories import T0, run_record, step_result, step_spec, task, workflow

REPO = Path(__file__).resolve().parents[2]
LOCAL = "http://127.0.0.1"
TOKEN = "a-console-token-of-32-characters"


def diamond() -> Any:
    """benefits and risks in parallel, then summary (parallel_demo's shape)."""
    return workflow(
        task("benefits", "alpha"),
        task("risks", "alpha"),
        task("summary", "alpha", depends_on=["benefits", "risks"]),
        name="diamond",
    )


@dataclass
class FakeProc:
    code: int | None = 0

    def poll(self) -> int | None:
        return self.code


@dataclass
class RecordingLauncher(Launcher):
    """Records what would be started instead of starting it."""

    started: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__({})

    def start(self, run_id: str, args: list[str]) -> Launch:
        self.started.append(args)
        launch = Launch(run_id, args, FakeProc(), Path("/nonexistent"))  # type: ignore[arg-type]
        self._launches[run_id] = launch
        return launch


def settings_for(tmp_path: Path, **changes: Any) -> Settings:
    return Settings(
        run_store_url=str(tmp_path / "store"), config_dir=str(REPO / "config"), **changes
    )


def seed(store: RunStore) -> None:
    """Three runs: a succeeded diamond with usage and a <script> output, a failed one on
    subprocess, a running one on nats."""
    wf = diamond()
    done = run_record(
        "run-done",
        created_at=T0,
        workflow=wf,
        status="succeeded",
        finished_at=T0 + timedelta(seconds=5),
        steps=[StepState(step_id=s, status="succeeded", attempt=1) for s in wf.task_sequence],
        output="<script>alert('x')</script> final",
    )
    store.create_run(done)
    for i, step in enumerate(wf.task_sequence):
        result = step_result("run-done", step, output=f"<script>alert('{step}')</script>")
        result = result.model_copy(
            update={
                "usage": Usage(prompt_tokens=100, completion_tokens=10 * (i + 1), cost_usd=0.01),
                "timing": Timing(
                    queued_at=T0 + timedelta(seconds=i),
                    started_at=T0 + timedelta(seconds=i),
                    finished_at=T0 + timedelta(seconds=i + 1),
                ),
            }
        )
        if step == "risks":
            result = result.model_copy(update={"output_json": {"risks": ["<b>cost</b>"]}})
        store.write_attempt(result)
        store.commit_result(result)
    store.write_artifact("run-done", "summary", "report.html", "<h1>hi</h1>", "text/html")
    store.write_spec(
        step_spec(
            run_id="run-done",
            step_id="summary",
            step_index=2,
            workflow_name="diamond",
            task={"description": "Weigh <b>both</b> sides.", "expected_output": "A summary."},
        )
    )
    failed = run_record(
        "run-failed", created_at=T0 + timedelta(minutes=1), status="failed", backend="subprocess"
    )
    store.create_run(failed.model_copy(update={"finished_at": T0 + timedelta(minutes=2)}))
    live = run_record(
        "run-live",
        created_at=T0 + timedelta(minutes=2),
        status="running",
        backend="nats",
        workflow=wf,
        steps=[StepState(step_id=s, status="pending") for s in wf.task_sequence],
    )
    store.create_run(live)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[tuple[TestClient, RunStore, RecordingLauncher]]:
    settings = settings_for(tmp_path)
    store = open_store(settings.run_store_url)
    seed(store)
    launcher = RecordingLauncher()
    app = create_app(settings, store=store, launcher=launcher)
    with TestClient(app, base_url=LOCAL) as client:
        yield client, store, launcher


def form_key(client: TestClient, path: str) -> str:
    page = client.get(path)
    found = re.search(r'name="form_key" value="([^"]+)"', page.text)
    assert found, page.text[:500]
    return found.group(1)


# --- the runs page --------------------------------------------------------------------------


def test_the_runs_page_lists_runs_newest_first_with_their_totals(console: Any) -> None:
    client, _, _ = console
    page = client.get("/")
    assert page.status_code == 200
    order = re.findall(r'<tr data-run="([^"]+)"', page.text)
    assert order == ["run-live", "run-failed", "run-done"]
    # 3 attempts of 100 prompt tokens and 10, 20, 30 completion tokens, 1 cent each
    assert "tokens <b>360</b>" in page.text and "cost <b>$0.0300</b>" in page.text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=failed", ["run-failed"]),
        ("backend=nats", ["run-live"]),
        ("workflow=diamond&status=succeeded", ["run-done"]),
        ("q=run-done", ["run-done"]),
        ("q=fail", ["run-failed"]),
        ("until=2026-02-28", []),
        ("since=2026-03-01T12:01:30%2B00:00", ["run-live"]),
    ],
)
def test_the_runs_page_filters(console: Any, query: str, expected: list[str]) -> None:
    client, _, _ = console
    page = client.get(f"/?{query}")
    assert page.status_code == 200
    assert re.findall(r'<tr data-run="([^"]+)"', page.text) == expected


@pytest.mark.parametrize(
    "query",
    [
        "status=exploded",
        "backend=docker",
        "limit=0",
        "limit=x",
        "until=yesterday",
        "since=soon",
        "evil=1",
    ],
)
def test_a_bad_filter_is_a_400_that_names_it(console: Any, query: str) -> None:
    client, _, _ = console
    page = client.get(f"/?{query}")
    assert page.status_code == 400
    assert query.split("=")[0] in page.text


def test_a_query_is_parsed_into_filters() -> None:
    query = RunsQuery.parse({"status": "abandoned", "limit": "20", "q": " abc "})
    assert (query.status, query.limit, query.search) == ("abandoned", 20, "abc")
    with pytest.raises(QueryError):
        RunsQuery.parse({"q": "x" * 500})


# --- the run page ---------------------------------------------------------------------------


def test_the_run_page_draws_the_graph_with_step_states_and_escapes_outputs(console: Any) -> None:
    client, _, _ = console
    page = client.get("/runs/run-done")
    assert page.status_code == 200
    nodes = re.findall(r'<g class="node status-(\w+)" data-step="(\w+)"', page.text)
    assert nodes == [("succeeded", "benefits"), ("succeeded", "risks"), ("succeeded", "summary")]
    assert page.text.count('class="edge"') == 2
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&#39;summary&#39;)&lt;/script&gt;" in page.text
    assert "Weigh &lt;b&gt;both&lt;/b&gt; sides." in page.text  # the task as sent
    assert '{\n  "risks": [\n    "<b>cost</b>"\n  ]\n}' in html.unescape(page.text)
    assert "<b>cost</b>" not in page.text
    assert 'data-attempt="1"' in page.text  # a timeline bar per attempt
    assert "content-security-policy" in page.headers


def test_an_unknown_run_is_404_and_an_unsafe_id_400(console: Any) -> None:
    client, _, _ = console
    assert client.get("/runs/no-such-run").status_code == 404
    assert client.get("/runs/..%2Fetc").status_code in (400, 404)
    assert client.get("/runs/bad%20id").status_code == 400


def test_an_artifact_is_a_download_never_a_page(console: Any) -> None:
    client, _, _ = console
    got = client.get("/runs/run-done/artifacts/summary/report.html")
    assert got.status_code == 200 and got.content == b"<h1>hi</h1>"
    assert got.headers["content-disposition"].startswith("attachment")
    assert got.headers["content-type"].startswith("text/plain")
    assert client.get("/runs/run-done/artifacts/summary/.hidden").status_code == 400
    assert client.get("/runs/run-done/artifacts/summary/missing.txt").status_code == 404


def test_the_live_stream_of_a_finished_run_sends_its_view_and_ends(console: Any) -> None:
    client, _, _ = console
    with client.stream("GET", "/runs/run-done/live") as stream:
        body = "".join(stream.iter_text())
    assert "event: created" in body
    view = json.loads(re.search(r"event: view\r?\ndata: (.*)", body).group(1))  # type: ignore[union-attr]
    assert view["status"] == "succeeded" and view["finished"] is True
    assert {s["status"] for s in view["steps"].values()} == {"succeeded"}


# --- the guard ------------------------------------------------------------------------------


def test_without_a_token_only_loopback_host_names_are_answered(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path), launcher=RecordingLauncher())
    with TestClient(app, base_url="http://evil.example") as client:
        assert client.get("/").status_code == 403
    with TestClient(app, base_url="http://localhost:8765") as client:
        assert client.get("/healthz").status_code == 200


def test_with_a_token_every_request_needs_it_and_the_login_sets_a_cookie(tmp_path: Path) -> None:
    app = create_app(settings_for(tmp_path), token=TOKEN, launcher=RecordingLauncher())
    with TestClient(app, base_url="http://console.example") as client:
        assert client.get("/").status_code == 401
        assert client.get("/live/runs").status_code == 401
        assert client.get("/?token=wrong-token-wrong-token").status_code == 401
        login = client.get(f"/?token={TOKEN}&status=failed", follow_redirects=False)
        assert login.status_code == 303 and login.headers["location"] == "/?status=failed"
        assert "httponly" in login.headers["set-cookie"].lower()
        assert client.get("/").status_code == 200  # the cookie
    with TestClient(app, base_url="http://console.example") as other:
        assert other.get("/", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_a_non_loopback_host_needs_a_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    check_bind("127.0.0.1", None)
    with pytest.raises(ConfigError, match="AGENTIC_CONSOLE_TOKEN"):
        check_bind("0.0.0.0", None)
    with pytest.raises(ConfigError, match="16 characters"):
        check_bind("0.0.0.0", "short")
    check_bind("0.0.0.0", TOKEN)


# --- actions --------------------------------------------------------------------------------


def test_a_form_without_the_console_s_key_is_refused(console: Any) -> None:
    client, _, launcher = console
    got = client.post("/start", data={"workflow": "demo", "backend": "inprocess"})
    assert got.status_code == 400 and "form" in got.text
    assert launcher.started == []


def test_starting_a_catalog_workflow_runs_agentic_run_with_its_inputs(console: Any) -> None:
    client, _, launcher = console
    key = form_key(client, "/start?workflow=parallel_demo")
    got = client.post(
        "/start",
        data={
            "form_key": key,
            "workflow": "parallel_demo",
            "input.topic": "-rf /",
            "backend": "inprocess",
        },
        follow_redirects=False,
    )
    assert got.status_code == 303, got.text
    [args] = launcher.started
    assert args[0] == "run" and args[-2:] == ["--", "parallel_demo"]
    assert "--input=topic=-rf /" in args and "--backend=inprocess" in args
    assert "--detach" not in args
    run_id = next(a.split("=", 1)[1] for a in args if a.startswith("--run-id="))
    assert got.headers["location"] == f"/runs/{run_id}"


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"workflow": "../../etc/passwd", "backend": "inprocess"}, "not in the catalog"),
        ({"workflow": "demo", "backend": "docker"}, "backend 'docker'"),
        ({"workflow": "demo", "backend": "nats"}, "agentic up"),
        ({"workflow": "demo", "goal": "both", "backend": "inprocess"}, "one of them"),
        ({"goal": "x" * 5000, "backend": "inprocess"}, "at most"),
        ({"goal": "hi", "session": "../x", "backend": "inprocess"}, "session"),
        ({"workflow": "demo", "input.nope": "1", "backend": "inprocess"}, "input 'nope'"),
    ],
)
def test_a_start_form_the_catalog_does_not_allow_is_a_400(
    console: Any, form: dict[str, str], message: str
) -> None:
    client, _, launcher = console
    key = form_key(client, "/start")
    got = client.post("/start", data={"form_key": key, **form})
    assert got.status_code == 400 and message in html.unescape(got.text)
    assert launcher.started == []


def test_a_goal_starts_in_a_session_and_a_nats_run_detaches(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, nats_url="nats://127.0.0.1:1")
    launcher = RecordingLauncher()
    app = create_app(settings, launcher=launcher)
    with TestClient(app, base_url=LOCAL) as client:
        key = form_key(client, "/start")
        got = client.post(
            "/start",
            data={"form_key": key, "goal": "--help me", "session": "s1", "backend": "nats"},
            follow_redirects=False,
        )
    assert got.status_code == 303
    [args] = launcher.started
    assert "--goal=--help me" in args and "--session=s1" in args and "--detach" in args


def test_replay_goes_through_prepare_replay_and_agentic_replay(console: Any) -> None:
    client, _, launcher = console
    key = form_key(client, "/runs/run-done")
    bad = client.post(
        "/runs/run-done/replay", data={"form_key": key, "from_step": "nope", "backend": "inprocess"}
    )
    assert bad.status_code == 400 and "no such step" in html.unescape(bad.text)
    bad_set = client.post(
        "/runs/run-done/replay",
        data={"form_key": key, "from_step": "summary", "sets": "tasks.nope.retries=1"},
    )
    assert bad_set.status_code == 400 and "--set" in html.unescape(bad_set.text)
    assert launcher.started == []
    ok = client.post(
        "/runs/run-done/replay",
        data={
            "form_key": key,
            "from_step": "summary",
            "backend": "inprocess",
            "sets": "topic=owls",
        },
        follow_redirects=False,
    )
    assert ok.status_code == 303, ok.text
    [args] = launcher.started
    assert args[0] == "replay" and args[-2:] == ["--", "run-done"]
    assert "--from=summary" in args and "--set=topic=owls" in args


def test_cancel_of_a_local_run_writes_the_store_s_cancel_request(
    console: Any, tmp_path: Path
) -> None:
    client, store, _ = console
    record = run_record("run-local", status="running", backend="subprocess")
    store.create_run(record)
    key = form_key(client, "/runs/run-local")
    got = client.post("/runs/run-local/cancel", data={"form_key": key}, follow_redirects=False)
    assert got.status_code == 303
    assert store.cancel_request("run-local")["reason"] == "cancelled from agentic console"


def test_the_cli_arguments_keep_values_as_values() -> None:
    args = run_args(
        run_id="r", backend="nats", workflow="demo", inputs={"topic": "--x"}, store_url="s"
    )
    assert args == [
        "run",
        "--run-id=r",
        "--backend=nats",
        "--store=s",
        "--detach",
        "--input=topic=--x",
        "--",
        "demo",
    ]
    again = replay_args(
        source="r", new_id="n", from_step="a", backend="inprocess", sets=["x=1"], store_url="s"
    )
    assert again[-2:] == ["--", "r"] and "--set=x=1" in again


def test_workflow_inputs_are_topic_and_every_placeholder(tmp_path: Path) -> None:
    catalog = actions.load_local_catalog(settings_for(tmp_path))
    assert actions.workflow_inputs(catalog, "parallel_demo") == ["topic"]


# --- geometry and the fold ------------------------------------------------------------------


def test_steps_are_laid_out_in_columns_by_depth() -> None:
    deps = {"a": [], "b": [], "c": ["a", "b"], "d": ["c"], "e": ["a"]}
    assert depths(deps) == {"a": 0, "b": 0, "c": 1, "d": 2, "e": 1}
    layout = graph_layout(deps, {"a": "succeeded"})
    xs = {n.step_id: n.x for n in layout.nodes}
    assert xs["a"] == xs["b"] < xs["c"] == xs["e"] < xs["d"]
    assert {n.step_id: n.status for n in layout.nodes}["b"] == "pending"
    assert len(layout.edges) == 4


def test_the_timeline_has_a_bar_per_attempt_on_the_run_s_axis() -> None:
    first = step_result("r", "a", attempt=1).model_copy(
        update={
            "status": "failed",
            "output": None,
            "timing": Timing(started_at=T0, finished_at=T0 + timedelta(seconds=1)),
        }
    )
    second = step_result("r", "a", attempt=2).model_copy(
        update={
            "timing": Timing(
                started_at=T0 + timedelta(seconds=2), finished_at=T0 + timedelta(seconds=4)
            )
        }
    )
    bars = timeline(["a"], {"a": [first, second]}, start=T0, now=T0).bars
    assert [(b.attempt, b.status) for b in bars] == [(1, "failed"), (2, "succeeded")]
    assert bars[0].x < bars[1].x and bars[1].width == pytest.approx(2 * bars[0].width)


def test_a_follower_folds_events_into_the_view_it_sends() -> None:
    record = run_record("r1", steps=[StepState(step_id="a", status="pending")])
    view = initial_view(record)
    events = [
        RunEvent(run_id="r1", seq=0, type="step_ready", ts=T0, step_id="a", attempt=1),
        RunEvent(run_id="r1", seq=1, type="step_started", ts=T0, step_id="a", attempt=1),
    ]
    view, message = advance(view, events)
    sent = json.loads(message)
    assert sent["status"] == "running" and sent["steps"]["a"] == {
        "status": "running",
        "attempt": 1,
        "message": "",
    }
    done = RunEvent(run_id="r1", seq=2, type="succeeded", ts=T0, data={"output": "x"})
    view, message = advance(view, [done])
    assert json.loads(message)["finished"] is True


async def test_the_store_follower_sends_each_change_once_until_the_run_ends(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "store"))
    record = run_record(
        "r2", status="running", steps=[StepState(step_id="a", status="running", attempt=1)]
    )
    store.create_run(record)
    seen = []
    async for message in follow_store(store, "r2", poll_s=0.01):
        seen.append(json.loads(message))
        if len(seen) == 1:
            store.write_run(
                record.model_copy(
                    update={
                        "status": "succeeded",
                        "steps": [StepState(step_id="a", status="succeeded", attempt=1)],
                    }
                )
            )
    assert [s["status"] for s in seen] == ["running", "succeeded"]


async def test_the_runs_page_stream_tells_unfinished_runs_and_then_how_they_ended(
    tmp_path: Path,
) -> None:
    store = open_store(str(tmp_path / "store"))
    record = run_record("r3", status="running", steps=[StepState(step_id="a", status="running")])
    store.create_run(record)
    seen = []
    async for message in follow_open_runs(store, poll_s=0.01):
        seen.append(json.loads(message))
        if len(seen) == 1:
            store.write_run(
                record.model_copy(
                    update={
                        "status": "failed",
                        "steps": [StepState(step_id="a", status="failed", attempt=1)],
                    }
                )
            )
        if len(seen) == 3:
            break
    assert seen[0] == {"r3": {"status": "running", "steps_succeeded": 0, "steps_total": 1}}
    assert seen[1]["r3"]["status"] == "failed"  # the last word of a run that ended
    assert seen[2] == {}


def test_a_started_run_that_never_came_to_be_shows_why(console: Any, tmp_path: Path) -> None:
    client, _, launcher = console
    log = tmp_path / "child.log"
    log.write_text("error: planner 'planner' needs OPENAI_API_KEY\n")
    launcher._launches["run-refused"] = Launch(
        "run-refused",
        ["run"],
        FakeProc(2),  # type: ignore[arg-type]
        log,
    )
    page = client.get("/runs/run-refused")
    assert page.status_code == 200 and 'data-starting="1"' in page.text
    with client.stream("GET", "/runs/run-refused/live") as stream:
        body = "".join(stream.iter_text())
    assert "event: launch_failed" in body and "needs OPENAI_API_KEY" in body
